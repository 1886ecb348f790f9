"""The parallel strategy of a run (``trainer.strategy``): where sharding knowledge lives.

``ddp``   (default) every rank holds the full model; accelerate wraps it in DistributedDataParallel
          when there are several processes (one process: the plain model).
``fsdp2`` torch FSDP2 (``torch.distributed.fsdp.fully_shard``) applied by this module, the same code
          on CPU (gloo) and GPU (nccl): parameters, gradients and optimizer state are sharded.

Everything else (rollout, loss, checkpoint) asks this module instead of looking at wrappers or DTensors.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch

try:  # DTensor is public from torch 2.5 on
    from torch.distributed.tensor import DTensor
except ImportError:  # pragma: no cover - older torch
    DTensor = ()  # type: ignore[assignment,misc]


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DDP / accelerate wrappers (FSDP2 shards in place, so it is the model itself)."""
    while hasattr(model, "module") and isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    return model


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor: an FSDP2-sharded DTensor is all-gathered (a collective), others pass through."""
    if isinstance(tensor, DTensor):
        mesh_device = tensor.device_mesh.device_type
        if tensor.device.type != mesh_device:  # CPU-offloaded shard of a GPU mesh: gather on the device
            tensor = tensor.to(mesh_device)
        return tensor.full_tensor()
    return tensor


def iter_full_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, full tensor)`` for every entry of the unwrapped model's ``state_dict()``.

    Names are exactly ``unwrap(model).state_dict()``'s. One tensor is gathered at a time, so memory
    stays at one full tensor beyond the shards. Under FSDP2 each DTensor is all-gathered: a collective,
    so every rank must iterate to the end. Under DDP or one process the local tensors are yielded as is.
    """
    for name, tensor in unwrap(model).state_dict().items():
        yield name, full_tensor(tensor)


# ----------------------------------------------------------------------------- FSDP2

VISION_TOWER_NAMES = ("visual", "vision_tower", "vision_model")


def is_fsdp(model: torch.nn.Module) -> bool:
    """True when ``model`` (or a module inside it) is sharded with FSDP2."""
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in unwrap(model).modules())


def fsdp_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Every FSDP2 unit of ``model``, children before the root (post-order of ``modules()`` reversed)."""
    from torch.distributed.fsdp import FSDPModule

    return [m for m in reversed(list(unwrap(model).modules())) if isinstance(m, FSDPModule)]


def shard_units(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules that become their own FSDP2 unit, innermost first: decoder layers and vision blocks
    (the model's ``_no_split_modules`` classes), then the vision tower. The root is added by the caller."""
    hf = model.get_base_model() if hasattr(model, "get_base_model") else model
    block_classes = set(getattr(hf, "_no_split_modules", None) or ())
    blocks = [m for m in model.modules() if type(m).__name__ in block_classes]
    towers = [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in VISION_TOWER_NAMES]
    return blocks + [t for t in towers if t is not model]


def apply_fsdp2(model: torch.nn.Module, *, param_dtype: torch.dtype | None = None,
                cpu_offload: bool = False) -> torch.nn.Module:
    """Shard ``model`` in place with FSDP2 over :func:`shard_units` and the root; returns it.

    Mixed precision: parameters are all-gathered in ``param_dtype`` (None = their own dtype) and
    gradients reduced in float32. The root's lazy init runs here once, so that modules called outside
    the root's forward (the vision tower during generation and vision reuse) work from the start.
    """
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32 if param_dtype else None)
    offload = CPUOffloadPolicy() if cpu_offload else OffloadPolicy()
    for unit in shard_units(model):
        fully_shard(unit, mp_policy=mp, offload_policy=offload)
    fully_shard(model, mp_policy=mp, offload_policy=offload)
    model._get_fsdp_state()._lazy_init()
    return model


@contextlib.contextmanager
def gathered(model: torch.nn.Module) -> Iterator[None]:
    """Keep every FSDP2 unit unsharded inside the block (one all-gather per unit, not one per forward);
    reshard on exit. Used around ``generate`` so decoding does not all-gather per token. No-op without FSDP2.
    """
    units = fsdp_modules(model)
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
    for unit in units:
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
            unit.set_reshard_after_forward(True, recurse=False)


# ----------------------------------------------------------------------------- the strategy object


class Parallel:
    """What the trainer asks about processes: wrap models, agree across ranks, clip, gather state.

    ``strategy`` is ``trainer.strategy``; ``accelerator`` the run's accelerate Accelerator (it owns the
    process group: `accelerate launch` or `torchrun` set it up; one process needs none).
    """

    def __init__(self, strategy: str, accelerator: Any, *, param_dtype: torch.dtype | None = None,
                 cpu_offload: bool = False) -> None:
        self.strategy = strategy
        self.accelerator = accelerator
        self.world = int(accelerator.num_processes)
        self.rank = int(accelerator.process_index)
        self.is_main = bool(accelerator.is_main_process)
        self.param_dtype = param_dtype
        self.cpu_offload = cpu_offload
        # FSDP2 with one process has nothing to shard: the plain model, like ddp.
        self.sharded = strategy == "fsdp2" and self.world > 1

    @classmethod
    def from_config(cls, trainer: Any, accelerator: Any) -> Parallel:
        """From ``cfg.trainer`` (strategy, fsdp_cpu_offload) and the accelerator's mixed precision:
        under FSDP2, bf16/fp16 mixed precision gathers parameters in that dtype and reduces in float32."""
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(accelerator.mixed_precision))
        return cls(trainer.strategy, accelerator, param_dtype=dtype, cpu_offload=trainer.fsdp_cpu_offload)

    # -------------------------------------------------------------- models
    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The policy, sharded under FSDP2 (before the optimizer is built: it must see the shards)."""
        if not self.sharded:
            return model
        # fully_shard moves each unit to the mesh's device as it shards it: no full copy on the GPU first
        return apply_fsdp2(model, param_dtype=self.param_dtype, cpu_offload=self.cpu_offload)

    def prepare(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[torch.nn.Module, Any]:
        """DDP: accelerate's wrappers (DistributedDataParallel under several processes). FSDP2: as is."""
        if self.sharded:
            return model, optimizer
        return self.accelerator.prepare(model, optimizer)

    def wrap_reference(self, model: torch.nn.Module) -> torch.nn.Module:
        """A frozen reference model (KL): sharded like the policy under FSDP2, else moved to the device."""
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        if not self.sharded:
            return model.to(self.accelerator.device)
        return self.wrap(model)

    def gathered(self, model: torch.nn.Module) -> contextlib.AbstractContextManager:
        """Context in which ``model`` is whole on every rank (generation, evaluation)."""
        return gathered(model) if self.sharded else contextlib.nullcontext()

    def no_sync(self, model: torch.nn.Module) -> Callable[[], Any] | None:
        """Context factory that skips the gradient all-reduce of non-final micro-batches (DDP only).

        FSDP2 reduce-scatters every micro-batch: its sharded gradients stay small.
        """
        if self.world == 1 or self.sharded:
            return None
        return lambda: self.accelerator.no_sync(model)

    # -------------------------------------------------------------- agreement
    def _reduce(self, value: float, op: str) -> float:
        if self.world == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([float(value)], dtype=torch.float64, device=self.accelerator.device)
        dist.all_reduce(t, op={"min": dist.ReduceOp.MIN, "sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
        return float(t.item())

    def all_true(self, flag: bool | torch.Tensor) -> bool:
        """True on every rank iff ``flag`` is true on every rank (one all-reduce)."""
        return self._reduce(float(bool(flag)), "min") > 0.5

    def sum(self, value: float) -> float:
        return self._reduce(value, "sum")

    def min(self, value: float) -> float:
        return self._reduce(value, "min")

    def gather_objects(self, obj: Any) -> list[Any]:
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank (small Python objects, e.g. RNG states)."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            self.accelerator.wait_for_everyone()

    # -------------------------------------------------------------- gradients
    def clip_grad_norm(self, params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
        """Total gradient norm over all (sharded) parameters before clipping; clips when ``max_norm`` > 0.

        Returns a plain 0-d tensor, equal on every rank. Every rank must call it (FSDP2: a collective).
        """
        return clip_grad_norm(params, max_norm)

    # -------------------------------------------------------------- state
    def full_model_state(self, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
        """Full CPU state dict of the unwrapped model on rank 0 (None elsewhere). FSDP2: a collective."""
        if not self.sharded:
            return {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()} if self.is_main else None
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if not self.is_main:
            return None
        for name in tied_duplicates(model):  # gathered separately, they no longer share storage
            state.pop(name, None)
        return state

    def full_optimizer_state(self, model: torch.nn.Module, optimizer: Any) -> dict[str, Any] | None:
        """The optimizer state keyed by parameter name (the same for ddp and fsdp2) on rank 0, else None."""
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer
        if not self.sharded:
            return named_optimizer_state(model, inner) if self.is_main else None
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        state = get_optimizer_state_dict(model, inner,
                                         options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return state if self.is_main else None

    def load_optimizer_state(self, model: torch.nn.Module, optimizer: Any, state: dict[str, Any]) -> None:
        """Load a full optimizer state (parameter-name keys, or the integer keys of older checkpoints)."""
        inner = getattr(optimizer, "optimizer", optimizer)
        names = optimizer_param_names(model, inner)
        state = by_name(state, names)
        if not self.sharded:
            inner.load_state_dict(by_index(state, names))
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, inner, state, options=StateDictOptions(full_state_dict=True))


def tied_duplicates(model: torch.nn.Module) -> list[str]:
    """Names of parameters that are another name's tensor (tied weights, e.g. ``lm_head.weight``)."""
    first: dict[int, str] = {}
    out = []
    for name, p in unwrap(model).named_parameters(remove_duplicate=False):
        if id(p) in first:
            out.append(name)
        else:
            first[id(p)] = name
    return out


def clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Gradient norm of ``params`` (DTensor shards included) as a plain 0-d tensor; clips in place if > 0."""
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return torch.tensor(0.0)
    norm = torch.nn.utils.clip_grad_norm_(with_grad, max_norm if max_norm > 0 else math.inf)
    return full_tensor(norm).detach()


# ----------------------------------------------------------------------------- optimizer state by name


def optimizer_param_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Names (``unwrap(model).named_parameters()``) of the optimizer's parameters, in its index order."""
    names = {id(p): n for n, p in unwrap(model).named_parameters()}
    out = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in names:
                raise ValueError("the optimizer holds a parameter that is not in the model")
            out.append(names[id(p)])
    return out


def named_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` with parameter names instead of indices (torch DCP's full format)."""
    return by_name(optimizer.state_dict(), optimizer_param_names(model, optimizer))


def by_name(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Integer-keyed optimizer state -> name-keyed (already name-keyed state is returned as is)."""
    def name(key: Any) -> str:
        return names[key] if isinstance(key, int) else key

    return {"state": {name(k): v for k, v in state["state"].items()},
            "param_groups": [{**g, "params": [name(k) for k in g["params"]]} for g in state["param_groups"]]}


def by_index(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Name-keyed optimizer state -> the integer keys ``torch.optim.Optimizer.load_state_dict`` wants."""
    index = {n: i for i, n in enumerate(names)}
    missing = [k for g in state["param_groups"] for k in g["params"] if k not in index]
    if missing:
        raise ValueError(f"optimizer state names parameters the model does not train: {missing[:3]}")
    return {"state": {index[k]: v for k, v in state["state"].items()},
            "param_groups": [{**g, "params": [index[k] for k in g["params"]]} for g in state["param_groups"]]}
