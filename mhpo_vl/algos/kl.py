"""Per-token KL estimators against a reference policy (Schulman's k1, k2, k3), off by default.

With d = logp - ref_logp (log pi_theta / pi_ref on a token sampled from pi_theta):

- ``k1 = d``                        unbiased, can be negative
- ``k2 = d**2 / 2``                 biased, low variance
- ``k3 = exp(-d) - 1 + d``          unbiased, >= 0 (GRPO's choice)

The policy losses hold no KL term; the trainer aggregates ``kl_penalty(...)`` with the loss's
mask and aggregation and adds it times ``kl_coef``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import torch

from mhpo_vl.algos.aggregation import as_bool_mask
from mhpo_vl.algos.common import LOG_RATIO_CLAMP, compute_dtype

KL_ESTIMATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "k1": lambda d: d,
    "k2": lambda d: 0.5 * d.square(),
    # exp of -d clamped to +-20 (as verl) so a diverged token gives a large finite penalty, not inf.
    "k3": lambda d: torch.expm1(-d.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)) + d,
}


def kl_penalty(
    logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3", *, mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Per-token KL estimate (B, T) of the policy to the reference; gradient flows to ``logp`` only.

    logp, ref_logp (and mask, when given): (B, T). Computed in float32 for half-precision inputs;
    masked positions are 0 and never read arithmetically (they may hold inf/NaN).
    """
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {estimator!r}; choose one of {', '.join(KL_ESTIMATORS)}")
    if ref_logp.shape != logp.shape:
        raise ValueError(f"ref_logp shape {tuple(ref_logp.shape)} must equal logp shape {tuple(logp.shape)}")
    dtype = compute_dtype(logp.dtype)
    new, ref = logp.to(dtype), ref_logp.detach().to(dtype)
    if mask is not None:
        if mask.shape != logp.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} must equal logp shape {tuple(logp.shape)}")
        valid = as_bool_mask(mask)
        zero = torch.zeros((), dtype=dtype, device=logp.device)
        new, ref = torch.where(valid, new, zero), torch.where(valid, ref, zero)
    return KL_ESTIMATORS[estimator](new - ref)
