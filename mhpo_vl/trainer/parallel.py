"""The parallel strategy of a run (``trainer.strategy``): where sharding knowledge lives.

``ddp``   (default) every rank holds the full model; accelerate wraps it in DistributedDataParallel
          when there are several processes (one process: the plain model).
``fsdp2`` torch FSDP2 (``torch.distributed.fsdp.fully_shard``) applied by this module, the same code
          on CPU (gloo) and GPU (nccl): parameters, gradients and optimizer state are sharded.

Everything else (rollout, loss, checkpoint) asks this module instead of looking at wrappers or DTensors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

try:  # DTensor is public from torch 2.5 on
    from torch.distributed.tensor import DTensor
except ImportError:  # pragma: no cover - older torch
    DTensor = ()  # type: ignore[assignment,misc]


def _group_initialized() -> bool:
    """True when a torch.distributed process group exists (of any size)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


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


def iter_full_weights(model: torch.nn.Module, keep: Callable[[str], bool] | None = None
                      ) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, full tensor)`` for every entry of the unwrapped model's ``state_dict()`` (only the names
    ``keep`` accepts, when given; the others are never gathered).

    Names are exactly ``unwrap(model).state_dict()``'s. One tensor is gathered at a time, so memory
    stays at one full tensor beyond the shards. Under FSDP2 each DTensor is all-gathered: a collective,
    so every rank must iterate to the end (and ``keep`` must decide the same on every rank). Under DDP or
    one process the local tensors are yielded as is.
    """
    for name, tensor in unwrap(model).state_dict().items():
        if keep is None or keep(name):
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
                cpu_offload: bool = False,
                init: Callable[[torch.nn.Module], None] | None = None) -> torch.nn.Module:
    """Shard ``model`` in place with FSDP2 over :func:`shard_units` and the root; returns it.

    Mixed precision: parameters are all-gathered in ``param_dtype`` (None = their own dtype) and
    gradients reduced in float32. ``init`` (e.g. :func:`fill_from_rank0`) runs on the sharded model
    before the root's lazy init, which runs here once, so that modules called outside the root's
    forward (the vision tower during generation and vision reuse) work from the start.
    """
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32 if param_dtype else None)
    # pinned host memory speeds copies to an accelerator; a CPU-only build cannot pin (no accelerator)
    offload = CPUOffloadPolicy(pin_memory=torch.cuda.is_available()) if cpu_offload else OffloadPolicy()
    for unit in shard_units(model):
        fully_shard(unit, mp_policy=mp, offload_policy=offload)
    fully_shard(model, mp_policy=mp, offload_policy=offload)
    if init is not None:
        init(model)
    model._get_fsdp_state()._lazy_init()
    return model


def _signature(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...], str]]:
    """``(name, shape, dtype)`` of every state-dict entry and buffer: what ranks must agree on to share weights."""
    entries = {**dict(model.named_buffers()), **model.state_dict()}
    return [(name, tuple(t.shape), str(t.dtype)) for name, t in entries.items()]


def fill_from_rank0(model: torch.nn.Module, full_state: dict[str, torch.Tensor] | None,
                    device: torch.device) -> None:
    """Give every rank's FSDP2-sharded ``model`` the weights of rank 0 (a collective; every rank calls it).

    ``full_state`` is rank 0's ``state_dict()`` taken before sharding (None on other ranks, whose model may
    be on the meta device, as ``load_policy(on_meta=True)`` builds it). Parameters and persistent buffers
    go through torch's ``set_model_state_dict(full_state_dict=True, broadcast_from_rank0=True)``, one
    tensor at a time, so no rank but 0 ever holds the full model. Meta shards are first allocated on
    ``device`` (``to_empty``, which keeps tied parameters one object; ``load_state_dict(assign=True)``
    would untie them). Non-persistent buffers (rotary ``inv_freq``: not in a state dict) are broadcast
    from rank 0 on ``device`` (the process group's: the accelerator's device).
    """
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    if any(t.is_meta for t in model.state_dict().values()):
        model.to_empty(device=device)  # allocate the local shards (FSDP2 re-pads, pins offloaded ones); ties kept
    set_model_state_dict(model, full_state if dist.get_rank() == 0 else {},
                         options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    for module in model.modules():
        for name in sorted(module._non_persistent_buffers_set):
            buf = module._buffers.get(name)
            if buf is None:
                continue
            on_device = buf.to(device)  # the collective's device (CUDA under NCCL), wherever the buffer lives
            dist.broadcast(on_device, src=0)
            buf.copy_(on_device)


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
        # FSDP2 with one process and no process group: the plain model, like ddp. A 1-rank group
        # (torchrun --nproc_per_node 1, scripts/gpu_smoke.py) shards, e.g. for fsdp_cpu_offload on one GPU.
        self.sharded = strategy == "fsdp2" and (self.world > 1 or _group_initialized())

    @classmethod
    def from_config(cls, trainer: Any, accelerator: Any) -> Parallel:
        """From ``cfg.trainer`` (strategy, fsdp_cpu_offload) and the accelerator's mixed precision:
        under FSDP2, bf16/fp16 mixed precision gathers parameters in that dtype and reduces in float32."""
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(accelerator.mixed_precision))
        return cls(trainer.strategy, accelerator, param_dtype=dtype, cpu_offload=trainer.fsdp_cpu_offload)

    # -------------------------------------------------------------- models
    @property
    def builds_on_meta(self) -> bool:
        """True on the FSDP2 ranks > 0 of a multi-process run: they build the model on the meta device
        (``load_policy(cfg, on_meta=True)``, no weights read) and :meth:`wrap` fills their shards from
        rank 0, so only rank 0 holds the full model in host memory."""
        return self.sharded and self.world > 1 and not self.is_main

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The policy, sharded under FSDP2 (before the optimizer is built: it must see the shards).

        Several processes: every rank calls it. When some rank's model is on the meta device
        (:attr:`builds_on_meta`), all ranks take rank 0's weights while sharding (:func:`fill_from_rank0`).
        """
        if not self.sharded:
            return model
        fill: Callable[[torch.nn.Module], None] | None = None
        if self.world > 1 and not self.all_true(not any(t.is_meta for t in model.state_dict().values())):
            signatures = self.gather_objects(_signature(model))
            if any(sig != signatures[0] for sig in signatures):
                bad = next(r for r, sig in enumerate(signatures) if sig != signatures[0])
                diff = next((a, b) for a, b in zip(signatures[0] + [None], signatures[bad] + [None]) if a != b)
                raise RuntimeError(f"rank {bad} built a different model than rank 0 (rank 0 {diff[0]}, rank {bad} "
                                   f"{diff[1]}): cannot share rank 0's weights")
            full = model.state_dict() if self.is_main else None
            device = torch.device(self.accelerator.device)

            def fill(sharded: torch.nn.Module) -> None:
                fill_from_rank0(sharded, full, device)
                if full is not None:
                    full.clear()  # rank 0's full tensors go as soon as every shard is filled
        # fully_shard moves each unit to the mesh's device as it shards it: no full copy on the GPU first
        return apply_fsdp2(model, param_dtype=self.param_dtype, cpu_offload=self.cpu_offload, init=fill)

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
    """Gradient norm of ``params`` (DTensor shards included) as a plain float32 0-d tensor, equal on every
    rank; when ``max_norm`` > 0 every gradient is scaled in place, on its own device, by
    min(1, max_norm / (norm + 1e-6)) (torch.nn.utils.clip_grad_norm_'s rule). A collective under FSDP2.

    The norm comes from local shards (:func:`total_grad_norm`), never from DTensor arithmetic: FSDP2 with
    CPU offload keeps CPU gradient shards on a CUDA mesh, whose NCCL-only group cannot reduce CPU tensors.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norm = total_grad_norm(grads)
    if max_norm > 0:
        coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        on_device: dict[torch.device, torch.Tensor] = {}
        with torch.no_grad():
            for grad in grads:
                local = grad.to_local() if isinstance(grad, DTensor) else grad
                if local.device not in on_device:
                    on_device[local.device] = coef.to(local.device)
                local.mul_(on_device[local.device])
    return norm.detach()


def total_grad_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """L2 norm of all ``grads`` viewed as one vector: a float32 0-d tensor, the same on every rank.

    DTensors sharded over a 1-D mesh (FSDP2): each rank sums the squared norms of its local shards, moves
    that one number to the :func:`collective_device` of the mesh's process group and all-reduces it (one
    all-reduce per group). Plain tensors (DDP, one process) and replicated DTensors count once, locally.
    """
    import torch.distributed as dist

    sharded: dict[Any, list[torch.Tensor]] = {}
    local: list[torch.Tensor] = []
    for grad in grads:
        if not isinstance(grad, DTensor):
            local.append(grad)
        elif grad.device_mesh.ndim == 1 and grad.placements[0].is_shard():
            sharded.setdefault(grad.device_mesh.get_group(), []).append(grad.to_local())
        elif all(p.is_replicate() for p in grad.placements):
            local.append(grad.to_local())
        else:
            raise NotImplementedError(f"clip_grad_norm: gradients placed as {grad.placements} on a "
                                      f"{grad.device_mesh.ndim}-D mesh are not supported")
    parts = [_squared_norm(local)] if local else []
    for group, shards in sharded.items():
        partial = _squared_norm(shards)
        partial = partial.to(collective_device(dist.get_backend(group), partial.device))
        dist.all_reduce(partial, op=dist.ReduceOp.SUM, group=group)
        parts.append(partial)
    device = parts[0].device
    return torch.stack([p.to(device) for p in parts]).sum().sqrt()


def _squared_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Sum of squared L2 norms (float32, 0-d) of tensors on any devices; on the first tensor's device."""
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for t in tensors:
        by_device.setdefault(t.device, []).append(t.detach())
    device = tensors[0].device
    sums = [torch.stack([torch.linalg.vector_norm(t, dtype=torch.float32) for t in ts]).square().sum().to(device)
            for ts in by_device.values()]
    return torch.stack(sums).sum()


def collective_device(backend: str, data_device: torch.device) -> torch.device:
    """The device on which a process group with ``backend`` (``torch.distributed.get_backend``: "gloo",
    "nccl", or per device type as in "cpu:gloo,cuda:nccl") can reduce a tensor that lives on ``data_device``.

    ``data_device`` itself when the backend serves its type (gloo: CPU; a "cpu:gloo,cuda:nccl" group: both,
    so offloaded CPU data stays on the CPU); otherwise the device the backend does serve: the current CUDA
    device for NCCL alone (CPU-offloaded FSDP2 gradients, a few bytes copied to the GPU).
    """
    import torch.distributed as dist

    if ":" in backend:
        served = [part.split(":", 1)[0].strip() for part in backend.split(",")]
    else:
        served = list(dist.Backend.backend_capability.get(backend.lower(), [data_device.type]))
    if data_device.type in served:
        return data_device
    kind = served[0]
    module = getattr(torch, kind, None)  # torch.cuda, torch.xpu: the current device's index
    if kind != "cpu" and module is not None and hasattr(module, "is_available") and module.is_available():
        return torch.device(kind, module.current_device())
    return torch.device(kind)


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
