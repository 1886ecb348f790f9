"""Input handling shared by every policy loss: shape checks, float32 compute, masking, metrics.

Masked positions may hold anything (inf, NaN, padding garbage): inputs are masked with
``torch.where`` *before* any arithmetic, so nothing from a masked token reaches the loss or the
gradient. Half-precision inputs are computed in float32 (float64 stays float64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from mhpo_vl.algos.aggregation import as_bool_mask, masked_fraction, masked_mean, masked_min_max

# exp() of an unbounded log-ratio is taken only after clamping to +-LOG_RATIO_CLAMP (e^20 ~ 4.9e8),
# as verl does: it keeps losses and gradients finite for log-ratios up to +-1e4 and changes no value
# the clipped/gated losses produce for |log r| < 20.
LOG_RATIO_CLAMP = 20.0
# |log r| above this counts a token as "far" from on-policy (the ratio_far_frac metric): r outside ~[0.82, 1.22].
FAR_LOG_RATIO = 0.2

Metrics = dict[str, torch.Tensor]


@dataclass(frozen=True)
class TokenBatch:
    """Masked, upcast per-token inputs of one loss call; every tensor is (B, T).

    ``logp`` and ``log_ratio`` carry the gradient to the caller's ``logp``; ``adv`` and the old
    log-probs are detached. All three are exactly 0 at masked positions.
    """

    logp: torch.Tensor
    log_ratio: torch.Tensor
    adv: torch.Tensor
    mask: torch.Tensor


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs, float64 for float64."""
    return torch.promote_types(dtype, torch.float32)


def prepare(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> TokenBatch:
    """Check shapes and build the :class:`TokenBatch` of one loss call.

    logp, old_logp, mask: (B, T); advantages: (B,) per response or (B, T) per token.
    """
    if logp.dim() != 2:
        raise ValueError(f"logp must be (B, T), got shape {tuple(logp.shape)}")
    for name, t in (("old_logp", old_logp), ("mask", mask)):
        if t.shape != logp.shape:
            raise ValueError(f"{name} shape {tuple(t.shape)} must equal logp shape {tuple(logp.shape)}")
    if advantages.shape not in (logp.shape[:1], logp.shape):
        raise ValueError(
            f"advantages shape {tuple(advantages.shape)} must be (B,)={tuple(logp.shape[:1])} "
            f"or (B, T)={tuple(logp.shape)}"
        )
    dtype = compute_dtype(logp.dtype)
    valid = as_bool_mask(mask)
    zero = torch.zeros((), dtype=dtype, device=logp.device)
    new = torch.where(valid, logp.to(dtype), zero)
    old = torch.where(valid, old_logp.detach().to(dtype), zero)
    adv = advantages.detach().to(dtype)
    if adv.dim() == 1:
        adv = adv.unsqueeze(-1).expand_as(new)
    adv = torch.where(valid, adv, zero)
    return TokenBatch(logp=new, log_ratio=new - old, adv=adv, mask=valid)


def safe_ratio(log_ratio: torch.Tensor) -> torch.Tensor:
    """exp(log r) with log r clamped to +-LOG_RATIO_CLAMP (finite values and gradients)."""
    return torch.exp(log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))


def ratio_metrics(log_ratio: torch.Tensor, mask: torch.Tensor) -> Metrics:
    """ratio_mean / ratio_min / ratio_max of r = exp(log r) over valid tokens (r clamped at e^+-20), and
    ratio_far_frac, the share of valid tokens with |log r| > FAR_LOG_RATIO. Scalar tensors, no host sync."""
    with torch.no_grad():
        ratio = safe_ratio(log_ratio)
        lo, hi = masked_min_max(ratio, mask)
        mean = torch.where(mask.any(), masked_mean(ratio, mask), torch.ones((), dtype=ratio.dtype, device=ratio.device))
        far = masked_fraction(log_ratio.abs() > FAR_LOG_RATIO, mask)
    return {"ratio_mean": mean, "ratio_min": lo, "ratio_max": hi, "ratio_far_frac": far}


def clip_bounds(
    clip_eps: Optional[float], clip_eps_low: Optional[float], clip_eps_high: Optional[float]
) -> tuple[float, float]:
    """(eps_low, eps_high): the split values where given, else ``clip_eps``; each must be >= 0."""
    low = clip_eps if clip_eps_low is None else clip_eps_low
    high = clip_eps if clip_eps_high is None else clip_eps_high
    for name, value in (("clip_eps_low", low), ("clip_eps_high", high)):
        if value is None or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} (or clip_eps) must be a finite number >= 0, got {value!r}")
    return float(low), float(high)


def require_positive(**hparams: float) -> None:
    """Raise ValueError naming the first hyperparameter that is not a finite number > 0."""
    for name, value in hparams.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"hyperparameter {name} must be a finite number > 0, got {value!r}")


def detached(metrics: Metrics) -> Metrics:
    """The same metrics, each detached from the graph (scalar tensors; no host sync)."""
    return {k: v.detach() for k, v in metrics.items()}
