"""Per-token "applied weight" of each policy loss, for diagnostics (the rollout viewer), not for training.

    w = token_weights("mhpo", logp, old_logp, advantages, mask, **hparams)   # (B, T), 0 on masked tokens

What the weight is, per loss (each reuses the loss's own helpers, so it cannot drift from the loss):
- mhpo: exp(psi - zeta), the factor on -A (0.265 on-policy with the defaults, 1 with dhp_normalize);
- grpo, dr_grpo, dapo, gspo, gmpo: the clip mask, 1 where the token's gradient passes, 0 where the
  clip cuts it off (for gspo the whole response shares its sequence ratio's verdict);
- cispo: the clipped, stop-gradient IS weight clip(r, lo, 1 + e_high);
- sapo: the soft gate sigmoid(tau (r - 1)) * 4 / tau.
Hyperparameters are the loss's (same names and defaults); ``agg`` and ``max_len`` are ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mhpo_vl.algos.common import TokenBatch, clip_bounds, prepare, safe_ratio
from mhpo_vl.algos.losses import (
    cispo_bounds,
    gmpo_clipped,
    gspo_log_ratio,
    loss_defaults,
    mhpo_terms,
    mhpo_weight,
    ppo_clipped,
    sapo_gate,
)

WeightFn = Callable[[TokenBatch, dict[str, Any]], torch.Tensor]


def _passes(high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    return (~(high | low)).float()


def _mhpo(batch: TokenBatch, hp: dict[str, Any]) -> torch.Tensor:
    keys = ("c", "k_pos", "lam_pos", "k_neg", "lam_neg", "dhp_normalize", "lfm", "dhp", "hazard")
    return mhpo_weight(*mhpo_terms(batch.log_ratio, **{k: hp[k] for k in keys}))


def _ppo(batch: TokenBatch, hp: dict[str, Any]) -> torch.Tensor:
    eps_low, eps_high = clip_bounds(hp.get("clip_eps"), hp.get("clip_eps_low"), hp.get("clip_eps_high"))
    return _passes(*ppo_clipped(safe_ratio(batch.log_ratio), batch.adv, eps_low, eps_high))


def _gspo(batch: TokenBatch, hp: dict[str, Any]) -> torch.Tensor:
    eps_low, eps_high = clip_bounds(None, hp["clip_eps_low"], hp["clip_eps_high"])
    return _passes(*ppo_clipped(safe_ratio(gspo_log_ratio(batch)), batch.adv, eps_low, eps_high))


def _gmpo(batch: TokenBatch, hp: dict[str, Any]) -> torch.Tensor:
    eps_low, eps_high = clip_bounds(hp.get("clip_eps"), hp.get("clip_eps_low"), hp.get("clip_eps_high"))
    return _passes(*gmpo_clipped(batch.log_ratio, batch.adv, eps_low, eps_high))


def _cispo(batch: TokenBatch, hp: dict[str, Any]) -> torch.Tensor:
    lower, upper = cispo_bounds(hp.get("clip_eps_low"), hp["clip_eps_high"])
    return safe_ratio(batch.log_ratio).clamp(lower, upper)


def _sapo(batch: TokenBatch, hp: dict[str, Any]) -> torch.Tensor:
    return sapo_gate(batch, hp["tau_pos"], hp["tau_neg"])


TOKEN_WEIGHTS: dict[str, WeightFn] = {
    "mhpo": _mhpo, "grpo": _ppo, "dr_grpo": _ppo, "dapo": _ppo, "gspo": _gspo, "gmpo": _gmpo,
    "cispo": _cispo, "sapo": _sapo,
}

# What the weight means, shown in the viewer's legend.
WEIGHT_KINDS: dict[str, str] = {
    "mhpo": "exp(psi - zeta)", "cispo": "clipped IS weight", "sapo": "soft gate",
    **{name: "clip mask (1 = gradient passes)" for name in ("grpo", "dr_grpo", "dapo", "gspo", "gmpo")},
}


@torch.no_grad()
def token_weights(
    name: str, logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
    **hparams: Any,
) -> torch.Tensor:
    """The per-token weight loss ``name`` applies (see module docstring): (B, T) float, 0 where masked.

    logp, old_logp, mask: (B, T); advantages: (B,) or (B, T); ``hparams`` as for the loss.
    """
    if name not in TOKEN_WEIGHTS:
        raise KeyError(f"no token weight for policy loss {name!r}; known: {', '.join(TOKEN_WEIGHTS)}")
    hp = {**loss_defaults(name), **hparams}
    batch = prepare(logp, old_logp, advantages, mask)
    weight = TOKEN_WEIGHTS[name](batch, hp)
    return torch.where(batch.mask, weight, torch.zeros_like(weight))
