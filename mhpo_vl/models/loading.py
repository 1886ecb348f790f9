"""Load a policy model: local directory or hub id, dtype, attention, gradient checkpointing, LoRA."""

from __future__ import annotations

import logging
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

from mhpo_vl.config import ModelConfig
from mhpo_vl.errors import UserError

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}
# Module-name fragments of the vision tower across Qwen2/2.5/3-VL (model.visual.* / visual.*).
VISION_PREFIXES = ("visual.", "model.visual.", "vision_tower.", "model.vision_tower.")


def is_vision_param(name: str) -> bool:
    """True for parameters of the vision tower (including the patch merger)."""
    clean = name.replace("base_model.model.", "")
    return clean.startswith(VISION_PREFIXES) or ".visual." in clean


def load_policy(model_cfg: ModelConfig, *, on_meta: bool = False) -> torch.nn.Module:
    """Load the policy described by ``model_cfg``; VLMs via AutoModelForImageTextToText, LMs via CausalLM,
    a GGUF file (``model.gguf_file``) via :mod:`mhpo_vl.models.gguf`.

    With ``model_cfg.lora.enabled`` the base weights are frozen and only LoRA adapters train; the vision
    tower stays frozen unless ``model_cfg.freeze_vision_tower`` is false. ``on_meta``: the same model
    (classes, names, adapters, trainable flags, tied weights) built from the config with its tensors on the
    meta device and no weights read, for FSDP2 ranks > 0 that receive rank 0's weights while sharding
    (``Parallel.wrap``); a GGUF model is always read.
    """
    path = model_cfg.name_or_path
    if model_cfg.gguf_file:  # a llama.cpp file, dequantized on load (text LMs only)
        from mhpo_vl.models.gguf import load_gguf_model, resolve_gguf

        model, is_vlm = load_gguf_model(resolve_gguf(model_cfg.gguf_file, path), _DTYPES[model_cfg.dtype]), False
    else:
        model, is_vlm = _load_pretrained(model_cfg, on_meta)
    if model_cfg.gradient_checkpointing:
        kwargs_ckpt = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs_ckpt)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs_ckpt)
        model.config.use_cache = False
    if model_cfg.lora.enabled:
        model = apply_lora(model, model_cfg)
    elif is_vlm and model_cfg.freeze_vision_tower:
        for name, param in model.named_parameters():
            if is_vision_param(name):
                param.requires_grad_(False)
    return model


def _load_pretrained(model_cfg: ModelConfig, on_meta: bool = False) -> tuple[torch.nn.Module, bool]:
    """(model, is_vlm) from a local directory or hub id; ``on_meta``: from its config, on the meta device."""
    path = model_cfg.name_or_path
    if not path:
        raise UserError("model.name_or_path is empty: set it to a local model directory or a hub id")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model config from {path!r}: {exc}") from None
    is_vlm = hasattr(config, "vision_config")
    auto = AutoModelForImageTextToText if is_vlm else AutoModelForCausalLM
    kwargs: dict[str, Any] = {"dtype": _DTYPES[model_cfg.dtype],
                              "trust_remote_code": model_cfg.trust_remote_code}
    if model_cfg.attn_implementation:
        check_attention(model_cfg.attn_implementation)
        kwargs["attn_implementation"] = model_cfg.attn_implementation
    if on_meta:  # "auto" as from_pretrained reads it from the config (float32 when the config names none)
        if kwargs["dtype"] == "auto":
            kwargs["dtype"] = _config_dtype(config)
        with torch.device("meta"):
            model = auto.from_config(config, **kwargs)
        return model.eval(), is_vlm  # from_pretrained's mode
    return auto.from_pretrained(path, **kwargs), is_vlm


def _config_dtype(config: Any) -> torch.dtype:
    value = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(value, str):
        value = getattr(torch, value, None)
    return value if isinstance(value, torch.dtype) else torch.float32


# Flash attention kernels: the package each needs (not installed by default; the `flash-attn` extra).
_FLASH_PACKAGES = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}


def check_attention(impl: str) -> None:
    """One clear line when ``model.attn_implementation`` asks for flash attention that cannot run here."""
    import importlib.util

    package = _FLASH_PACKAGES.get(impl)
    if package is None:
        return
    if importlib.util.find_spec(package) is None:
        raise UserError(f"model.attn_implementation={impl} needs the {package} package, which is not installed: "
                        "use model.attn_implementation=sdpa (the default), or install flash-attn on a CUDA "
                        "machine (README, \"GPU\")")
    if not torch.cuda.is_available():
        raise UserError(f"model.attn_implementation={impl} needs a CUDA GPU; use model.attn_implementation=sdpa")


def apply_lora(model: torch.nn.Module, model_cfg: ModelConfig) -> torch.nn.Module:
    """Wrap ``model`` with peft LoRA adapters on the configured target modules (language model only,
    unless the vision tower is trainable)."""
    from peft import LoraConfig, get_peft_model

    lora = model_cfg.lora
    targets = list(lora.target_modules)
    if hasattr(model.config, "vision_config") and model_cfg.freeze_vision_tower:
        # A regex restricted to the language model, so the vision tower gets no adapters.
        names = "|".join(targets)
        target: Any = rf"^(?!.*visual).*\.({names})$"
    else:
        target = targets
    peft_cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                          target_modules=target, bias="none", task_type="CAUSAL_LM")
    try:
        model = get_peft_model(model, peft_cfg)
    except ValueError as exc:
        raise UserError(f"model.lora.target_modules: {exc}") from None
    if not model_cfg.freeze_vision_tower:
        for name, param in model.named_parameters():
            if is_vision_param(name) and "lora_" not in name:
                param.requires_grad_(True)
    return model


def trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
