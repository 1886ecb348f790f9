"""Switch dropout off in a model that stays in train mode (RL policy and reference forwards).

An RL update compares the trainer's probabilities pi with those of the policy that sampled the
responses (pi_old, or the sampler's mu). Sampling runs without dropout (``model.eval()``, or another
engine), so any dropout in the update's forward (LoRA's ``lora_dropout``, attention or hidden dropout
from the model config) makes pi differ from the sampler at equal weights: the on-policy ratio is no
longer 1. verl and EasyR1 zero dropout in the actor for the same reason. The model keeps train mode
(gradient checkpointing and some kernels follow it); only the dropout rates go to 0. SFT keeps dropout.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def _configs(model: torch.nn.Module) -> list[object]:
    """The model's config and its sub-configs (text_config, vision_config, ...), each once."""
    found: list[object] = []
    todo = [getattr(model, "config", None)]
    while todo:
        cfg = todo.pop()
        if cfg is None or any(cfg is seen for seen in found) or not hasattr(cfg, "to_dict"):
            continue
        found.append(cfg)
        todo.extend(value for value in vars(cfg).values() if hasattr(value, "to_dict"))
    return found


def _zero_rate_attributes(obj: object) -> int:
    """Set every float attribute of ``obj`` whose name mentions dropout (``attention_dropout``,
    ``hidden_dropout_prob``, ...) to 0.0; returns how many were non-zero."""
    changed = 0
    for name, value in list(vars(obj).items()):
        if "dropout" in name and isinstance(value, float):
            changed += value != 0.0
            setattr(obj, name, 0.0)
    return changed


def disable_dropout(model: torch.nn.Module) -> int:
    """Zero every dropout of ``model`` in place (train mode is kept); returns how many rates were non-zero.

    Covers ``nn.Dropout``-family modules (p = 0; peft's ``lora_dropout`` modules are of this kind),
    dropout-rate attributes that attention modules read in forward (``self.attention_dropout``), and the
    same keys of the model config and its sub-configs (remote-code models may read those at run time).
    Logs once when a LoRA dropout was configured, since the user asked for it.
    """
    changed, lora_rates = 0, set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            if module.p != 0.0:
                changed += 1
                if ".lora_dropout." in f".{name}.":
                    lora_rates.add(module.p)
            module.p = 0.0
        changed += _zero_rate_attributes(module)
    for cfg in _configs(model):
        changed += _zero_rate_attributes(cfg)
    if lora_rates:
        log.warning("dropout is off in RL forwards: model.lora.dropout=%s applies to SFT only (a dropout in the "
                    "policy forward makes it differ from the policy that sampled)",
                    ", ".join(f"{p:g}" for p in sorted(lora_rates)))
    return changed
