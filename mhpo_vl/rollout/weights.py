"""Trainer tensors -> the HF-named full weights an inference engine loads (weight sync).

The trainer yields ``(name, full tensor)`` pairs (``mhpo_vl.trainer.parallel.iter_full_weights``: a
gather under FSDP2, plain state_dict items otherwise). Names may carry wrapper prefixes (DDP's
``module.``, torch.compile's ``_orig_mod.``, peft's ``base_model.model.``). Under LoRA the engine gets
*merged* weights: W = W_base + scaling * B @ A for every adapted linear layer, computed from the three
tensors as they arrive (nothing is merged into the trainer's own weights, so no rounding drift).

Only tensors that can change are sent (trainable parameters, or the base weights of adapted layers):
a frozen vision tower never changes, and our LoRA never adapts it (vLLM's LoRA support covers the
language model only), so its weights stay as the engine loaded them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import torch

_PREFIXES = ("module.", "_orig_mod.", "base_model.model.")
_LORA = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A|lora_B)\.(?P<adapter>[^.]+)\.weight$")
_BASE = re.compile(r"^(?P<module>.+)\.base_layer\.(?P<kind>weight|bias)$")


def clean_name(name: str) -> str:
    """``name`` without wrapper prefixes (DDP, torch.compile, peft)."""
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix):], True
    return name.replace("._orig_mod.", ".").replace("._checkpoint_wrapped_module.", ".")


def lora_scalings(model: torch.nn.Module) -> dict[str, float]:
    """{clean module name: LoRA scaling (alpha / r, or alpha / sqrt(r) with rsLoRA)} of the active adapter."""
    out: dict[str, float] = {}
    for name, module in model.named_modules():
        scaling = getattr(module, "scaling", None)
        if isinstance(scaling, dict) and hasattr(module, "lora_A"):
            adapters = getattr(module, "active_adapters", None) or list(scaling)
            out[clean_name(name)] = float(scaling[adapters[0]])
    return out


def trainable_names(model: torch.nn.Module) -> set[str]:
    """Clean HF names of the engine tensors that training can change (adapted layers' merged weights)."""
    names: set[str] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        name = clean_name(name)
        lora = _LORA.match(name)
        names.add(f"{lora['module']}.weight" if lora else name)
    return names


def engine_weights(weights: Iterable[tuple[str, torch.Tensor]], model: torch.nn.Module,
                   only_trainable: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
    """HF-named full tensors for the engine: LoRA merged, wrappers stripped; see the module docstring.

    ``model`` is the unwrapped trainer model (for the LoRA scalings and which tensors are trainable).
    Every pair of ``weights`` is consumed (under FSDP2 the iteration is a collective on all ranks).
    """
    scalings = lora_scalings(model)
    keep = trainable_names(model) if only_trainable else None
    pending: dict[str, dict[str, torch.Tensor]] = {}
    for raw, tensor in weights:
        name = clean_name(raw)
        lora, base = _LORA.match(name), _BASE.match(name)
        if lora is None and base is None:
            if keep is None or name in keep:
                yield name, tensor
            continue
        module = (lora or base)["module"]
        if base is not None and base["kind"] == "bias":
            target = f"{module}.bias"
            if keep is None or target in keep or f"{module}.weight" in keep:
                yield target, tensor
            continue
        parts = pending.setdefault(module, {})
        parts[lora["part"] if lora else "base"] = tensor
        if len(parts) == 3:
            del pending[module]
            if keep is None or f"{module}.weight" in keep:
                yield f"{module}.weight", merge_lora(parts["base"], parts["lora_A"], parts["lora_B"],
                                                     scalings.get(module, 1.0))
    if pending:
        raise RuntimeError(f"LoRA tensors without their partners for: {', '.join(sorted(pending))}")


def merge_lora(base: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scaling: float) -> torch.Tensor:
    """W + scaling * B @ A in float32, returned in W's dtype. base (out, in), a (r, in), b (out, r)."""
    merged = base.float() + scaling * (b.float() @ a.float())
    return merged.to(base.dtype)
