"""Trainer tensors -> the HF-named full weights an inference engine loads (weight sync).

The trainer yields ``(name, full tensor)`` pairs (``mhpo_vl.trainer.parallel.iter_full_weights``: a
gather under FSDP2, plain state_dict items otherwise). Names may carry wrapper prefixes (DDP's
``module.``, torch.compile's ``_orig_mod.``, peft's ``base_model.model.``). Under LoRA the engine gets
*merged* weights: W = W_base + scaling * B @ A for every adapted linear layer, computed from the three
tensors as they arrive (nothing is merged into the trainer's own weights, so no rounding drift).

Only tensors that can change are sent (trainable parameters, or the base weights of adapted layers):
a frozen vision tower never changes, and our LoRA never adapts it (vLLM's LoRA support covers the
language model only), so its weights stay as the engine loaded them. The unit of a sync is the
engine's *layer*, though: vLLM fuses q/k/v into one ``qkv_proj`` and gate/up into one ``gate_up_proj``
(:data:`FUSED_MODULES`) and rebuilds a reloaded layer from what it receives, leaving any part it did
not receive uninitialised. So whenever a trainable tensor touches a layer, every weight and bias of
every HF module that loads into that layer is sent (LoRA on q_proj and v_proj sends k_proj too).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

import torch

_PREFIXES = ("module.", "_orig_mod.", "base_model.model.")
_LORA = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A|lora_B)\.(?P<adapter>[^.]+)\.weight$")
_BASE = re.compile(r"^(?P<module>.+)\.base_layer\.(?P<kind>weight|bias)$")

#: HF modules that vLLM loads into one fused layer: {engine layer: its HF parts}. This is the
#: ``packed_modules_mapping`` of vLLM 0.32's Qwen2, Qwen2-VL, Qwen2.5-VL, Qwen3, Qwen3-VL and Llama models
#: (tests/mhpo_vl/rollout/test_vllm_lora_sync.py checks it against those classes).
FUSED_MODULES: dict[str, tuple[str, ...]] = {
    "qkv_proj": ("q_proj", "k_proj", "v_proj"),
    "gate_up_proj": ("gate_proj", "up_proj"),
}
_FUSED_INTO = {part: layer for layer, parts in FUSED_MODULES.items() for part in parts}


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


def engine_layer(module: str) -> str:
    """The engine layer that HF module ``module`` loads into: ``x.self_attn.k_proj`` -> ``x.self_attn.qkv_proj``,
    ``x.mlp.up_proj`` -> ``x.mlp.gate_up_proj``; a module that is not fused is its own layer."""
    parent, _, leaf = module.rpartition(".")
    layer = _FUSED_INTO.get(leaf)
    if layer is None:
        return module
    return f"{parent}.{layer}" if parent else layer


def _engine_name(name: str) -> str:
    """Clean engine name of one trainer parameter: a LoRA factor counts as its layer's weight, a
    ``base_layer`` tensor as the module's own."""
    name = clean_name(name)
    lora, base = _LORA.match(name), _BASE.match(name)
    if lora is not None:
        return f"{lora['module']}.weight"
    return f"{base['module']}.{base['kind']}" if base is not None else name


def trainable_names(model: torch.nn.Module) -> set[str]:
    """Clean HF names of the engine tensors that training can change (adapted layers' merged weights)."""
    return {_engine_name(name) for name, param in model.named_parameters() if param.requires_grad}


def names_to_send(model: torch.nn.Module) -> set[str]:
    """Clean HF names a sync sends: :func:`trainable_names`, completed to whole engine layers (every
    weight and bias of every module that loads into a layer touched by a trainable tensor)."""
    every = {_engine_name(name) for name, _ in model.named_parameters()}
    touched = {engine_layer(name.rpartition(".")[0]) for name in trainable_names(model)}
    return {name for name in every if engine_layer(name.rpartition(".")[0]) in touched}


def sync_filter(model: torch.nn.Module) -> Callable[[str], bool]:
    """Predicate on the trainer's raw state-dict names: True for the tensors :func:`engine_weights` sends
    (with ``only_trainable``) or needs to build them (a LoRA layer's base weight and factors). Filtering
    before the gather (``iter_full_weights(model, keep=...)``) spares FSDP2 an all-gather of every frozen
    tensor per sync: under LoRA most of the model, and a tied LM head (the same tensor as the embeddings).
    The same on every rank, so the gathers stay matched."""
    keep = names_to_send(model)
    return lambda raw: _engine_name(raw) in keep


def engine_weights(weights: Iterable[tuple[str, torch.Tensor]], model: torch.nn.Module,
                   only_trainable: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
    """HF-named full tensors for the engine: LoRA merged, wrappers stripped; see the module docstring.

    ``model`` is the unwrapped trainer model (for the LoRA scalings and which tensors are trainable).
    With ``only_trainable`` the names of :func:`names_to_send` are sent, else every tensor.
    Every pair of ``weights`` is consumed (under FSDP2 the iteration is a collective on all ranks).
    """
    scalings = lora_scalings(model)
    keep = names_to_send(model) if only_trainable else None
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
            if keep is None or target in keep:
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
