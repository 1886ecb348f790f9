"""The parallel strategy of a run (``trainer.strategy``): where sharding knowledge lives.

``ddp``   (default) every rank holds the full model; accelerate wraps it in DistributedDataParallel
          when there are several processes (one process: the plain model).
``fsdp2`` torch FSDP2 (``torch.distributed.fsdp.fully_shard``) applied by this module, the same code
          on CPU (gloo) and GPU (nccl): parameters, gradients and optimizer state are sharded.

Everything else (rollout, loss, checkpoint) asks this module instead of looking at wrappers or DTensors.
"""

from __future__ import annotations

from collections.abc import Iterator

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
