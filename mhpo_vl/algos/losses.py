"""Policy losses: MHPO and the baselines it is compared with, behind one signature.

Every function in :data:`POLICY_LOSSES` is called as::

    loss, metrics = fn(logp, old_logp, advantages, mask, **hparams)

logp, old_logp, mask: (B, T) (token log-probs under the current and the behaviour policy, and
which tokens are response tokens); advantages: (B,) per response or (B, T) per token. ``loss`` is a
scalar (float32 for half-precision inputs) to minimise; ``metrics`` holds detached scalar tensors.
Hyperparameters are keyword-only, so an unknown name raises TypeError naming it. ``agg`` picks the
aggregation (see :mod:`mhpo_vl.algos.aggregation`); ``max_len`` is the divisor of
``seq-mean-token-sum-norm`` (default T). No KL term here: see :mod:`mhpo_vl.algos.kl`.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any, Optional

import torch

from mhpo_vl.algos.aggregation import aggregate, check_agg, masked_fraction, masked_mean
from mhpo_vl.algos.common import (
    LOG_RATIO_CLAMP,
    Metrics,
    TokenBatch,
    clip_bounds,
    detached,
    prepare,
    ratio_metrics,
    require_positive,
    safe_ratio,
)
from mhpo_vl.algos.hazards import get_hazard

PolicyLoss = Callable[..., tuple[torch.Tensor, Metrics]]


def _finish(
    loss_t: torch.Tensor, batch: TokenBatch, agg: str, max_len: Optional[int], metrics: Metrics
) -> tuple[torch.Tensor, Metrics]:
    """Aggregate the (B, T) per-token loss and attach ratio metrics."""
    loss = aggregate(loss_t, batch.mask, agg, max_len=max_len)
    return loss, detached({**ratio_metrics(batch.log_ratio, batch.mask), **metrics})


def _ppo_clip(
    ratio: torch.Tensor, batch: TokenBatch, eps_low: float, eps_high: float
) -> tuple[torch.Tensor, Metrics]:
    """PPO's pessimistic clip: per token max(-A r, -A clip(r, 1-eps_low, 1+eps_high)), and clip fractions.

    A token is clipped (zero gradient) when r > 1+eps_high with A > 0 or r < 1-eps_low with A < 0.
    """
    adv = batch.adv
    loss_t = torch.maximum(-adv * ratio, -adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high))
    with torch.no_grad():
        high, low = ppo_clipped(ratio, adv, eps_low, eps_high)
    return loss_t, clip_metrics(high, low, batch.mask)


def ppo_clipped(
    ratio: torch.Tensor, adv: torch.Tensor, eps_low: float, eps_high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) bool (B, T): tokens PPO's clip cuts off above (r > 1+e_high, A > 0) and below (r < 1-e_low, A < 0)."""
    return (ratio > 1.0 + eps_high) & (adv > 0), (ratio < 1.0 - eps_low) & (adv < 0)


def clip_metrics(high: torch.Tensor, low: torch.Tensor, mask: torch.Tensor) -> Metrics:
    """clip_frac / clip_frac_low / clip_frac_high over valid tokens from (B, T) bool clip flags."""
    high_frac, low_frac = masked_fraction(high, mask), masked_fraction(low, mask)
    return {"clip_frac": high_frac + low_frac, "clip_frac_low": low_frac, "clip_frac_high": high_frac}


def _sequence_log_ratio(values: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
    """Per-response mean of (B, T) ``values`` over valid tokens, as (B, 1); 0 for empty rows."""
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    total = torch.where(batch.mask, values, zero).sum(dim=-1, keepdim=True)
    return total / batch.mask.sum(dim=-1, keepdim=True).clamp(min=1)


def gspo_log_ratio(batch: TokenBatch) -> torch.Tensor:
    """GSPO-token's log s_t = log r_t - sg[log r_t] + sg[mean_t log r]: value the sequence's, gradient the token's. (B, T)"""
    seq_log_ratio = _sequence_log_ratio(batch.log_ratio, batch).detach()
    return batch.log_ratio - batch.log_ratio.detach() + seq_log_ratio


def sapo_gate(batch: TokenBatch, tau_pos: float, tau_neg: float) -> torch.Tensor:
    """SAPO's soft gate sigmoid(tau (r - 1)) * 4 / tau per token, tau = tau_pos where A > 0 else tau_neg. (B, T)"""
    require_positive(tau_pos=tau_pos, tau_neg=tau_neg)
    as_tensor = batch.adv.new_tensor
    tau = torch.where(batch.adv > 0, as_tensor(tau_pos), as_tensor(tau_neg))
    return torch.sigmoid(tau * (safe_ratio(batch.log_ratio) - 1.0)) * (4.0 / tau)


def cispo_bounds(clip_eps_low: Optional[float], clip_eps_high: float) -> tuple[float, float]:
    """CISPO's IS-weight bounds (lo, 1 + e_high); lo = 0 unless ``clip_eps_low`` is given (then 1 - e_low)."""
    eps_low, eps_high = clip_bounds(None, 1.0 if clip_eps_low is None else clip_eps_low, clip_eps_high)
    return max(0.0, 1.0 - eps_low), 1.0 + eps_high


def gmpo_clipped(
    log_r: torch.Tensor, adv: torch.Tensor, eps_low: float, eps_high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) bool (B, T): tokens GMPO's log-space clip cuts off (log r > e_high with A > 0, < -e_low with A < 0)."""
    return (log_r > eps_high) & (adv > 0), (log_r < -eps_low) & (adv < 0)


class _LogFidelityModulator(torch.autograd.Function):
    """psi = c * tanh(x / c), with the backward sech^2(x / c) taken from cosh, not from 1 - tanh^2.

    1 - tanh^2 rounds to exactly 0 once |x / c| > ~9 in float32; 1 / cosh^2 stays accurate (and
    > 0) until it underflows near |x / c| ~ 44, so the LFM gradient does not vanish early.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, c: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.c = c
        return c * torch.tanh(x / c)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad / torch.cosh(x / ctx.c).square(), None


def mhpo_terms(
    log_ratio: torch.Tensor, *, c: float, k_pos: float, lam_pos: float, k_neg: float, lam_neg: float,
    dhp_normalize: bool, lfm: bool, dhp: bool, hazard: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MHPO's (psi, zeta), each (B, T): psi = c tanh(log r / c) (LFM; log r when ``lfm=False``) keeps the
    gradient; zeta = hazard(sg[psi]) (DHP; 0 when ``dhp=False``) is a constant for the backward pass."""
    require_positive(c=c, k_pos=k_pos, lam_pos=lam_pos, k_neg=k_neg, lam_neg=lam_neg)
    hazard_fn = get_hazard(hazard)
    psi = _LogFidelityModulator.apply(log_ratio, float(c)) if lfm else log_ratio
    zeta = torch.zeros_like(psi)
    if dhp:
        zeta = hazard_fn(psi.detach(), k_pos, lam_pos, k_neg, lam_neg)
        if dhp_normalize:
            zeta = zeta - hazard_fn(torch.zeros((), dtype=psi.dtype, device=psi.device), k_pos, lam_pos, k_neg, lam_neg)
    return psi, zeta


def mhpo_weight(psi: torch.Tensor, zeta: torch.Tensor) -> torch.Tensor:
    """exp(psi - zeta), the factor MHPO applies to -A per token (B, T).

    One exponent, never exp(psi) * exp(-zeta). The clamp binds only when neither LFM nor DHP bounds
    the exponent (both switched off, or a hazard growing slower than linearly).
    """
    return torch.exp((psi - zeta).clamp(max=LOG_RATIO_CLAMP))


def mhpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    c: float = 1.5,
    k_pos: float = 1.5,
    lam_pos: float = 1.0,
    k_neg: float = 2.0,
    lam_neg: float = 0.8,
    dhp_normalize: bool = False,
    lfm: bool = True,
    dhp: bool = True,
    hazard: str = "weibull",
    agg: str = "seq-mean-token-mean",
    max_len: Optional[int] = None,
) -> tuple[torch.Tensor, Metrics]:
    """MHPO (arXiv 2603.16929): per token  -exp(psi - sg[zeta]) * A.

    psi = c * tanh(log r / c) (LFM; the raw log r when ``lfm=False``); zeta = hazard(sg[psi]) (DHP;
    0 when ``dhp=False``); ``dhp_normalize`` divides the weight by exp(-zeta(0)) so the on-policy
    gradient equals GRPO's. The exponent psi - zeta is formed before exp, so the loss and its
    gradient stay finite for any finite log-ratio. Metrics: ratio_mean/min/max,
    lfm_saturated_frac (|psi| > 0.9 c), hazard_weight_mean (mean applied exp(-zeta)).
    """
    check_agg(agg)
    batch = prepare(logp, old_logp, advantages, mask)
    psi, zeta = mhpo_terms(batch.log_ratio, c=c, k_pos=k_pos, lam_pos=lam_pos, k_neg=k_neg, lam_neg=lam_neg,
                           dhp_normalize=dhp_normalize, lfm=lfm, dhp=dhp, hazard=hazard)
    loss_t = -mhpo_weight(psi, zeta) * batch.adv
    with torch.no_grad():
        metrics = {
            "lfm_saturated_frac": masked_fraction(psi.abs() > 0.9 * c, batch.mask),
            "hazard_weight_mean": masked_mean(torch.exp(-zeta), batch.mask),
        }
    return _finish(loss_t, batch, agg, max_len, metrics)


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    clip_eps_low: Optional[float] = None,
    clip_eps_high: Optional[float] = None,
    agg: str = "seq-mean-token-mean",
    max_len: Optional[int] = None,
) -> tuple[torch.Tensor, Metrics]:
    """GRPO: PPO clip  max(-A r, -A clip(r, 1-e_low, 1+e_high)), e = clip_eps unless split."""
    check_agg(agg)
    eps_low, eps_high = clip_bounds(clip_eps, clip_eps_low, clip_eps_high)
    batch = prepare(logp, old_logp, advantages, mask)
    loss_t, metrics = _ppo_clip(safe_ratio(batch.log_ratio), batch, eps_low, eps_high)
    return _finish(loss_t, batch, agg, max_len, metrics)


def dr_grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    clip_eps_low: Optional[float] = None,
    clip_eps_high: Optional[float] = None,
    agg: str = "seq-mean-token-sum-norm",
    max_len: Optional[int] = None,
) -> tuple[torch.Tensor, Metrics]:
    """Dr.GRPO: GRPO's clip without per-response length normalisation (token sums / max_len).

    Pair it with ``group_advantages(..., std_normalize=False)``.
    """
    return grpo_loss(
        logp, old_logp, advantages, mask, clip_eps=clip_eps, clip_eps_low=clip_eps_low,
        clip_eps_high=clip_eps_high, agg=agg, max_len=max_len,
    )


def dapo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps_low: float = 0.2,
    clip_eps_high: float = 0.28,
    agg: str = "token-mean",
    max_len: Optional[int] = None,
) -> tuple[torch.Tensor, Metrics]:
    """DAPO: clip-higher PPO clip (e_low 0.2, e_high 0.28), token-mean over the batch.

    Dynamic sampling and the soft overlong penalty live in the trainer and the rewards.
    """
    return grpo_loss(
        logp, old_logp, advantages, mask, clip_eps_low=clip_eps_low, clip_eps_high=clip_eps_high,
        agg=agg, max_len=max_len,
    )


def gspo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps_low: float = 3e-4,
    clip_eps_high: float = 4e-4,
    agg: str = "seq-mean-token-mean",
    max_len: Optional[int] = None,
) -> tuple[torch.Tensor, Metrics]:
    """GSPO (GSPO-token form): the sequence ratio s = exp(mean_t log r), PPO-clipped, on every token.

    Token t uses s_t = sg[s] * r_t / sg[r_t]: its value is s, its gradient s * A per token. With a
    per-response advantage this is exactly GSPO's sequence objective under every aggregation mode
    (all modes weigh the tokens of one response equally).
    """
    check_agg(agg)
    eps_low, eps_high = clip_bounds(None, clip_eps_low, clip_eps_high)
    batch = prepare(logp, old_logp, advantages, mask)
    loss_t, metrics = _ppo_clip(safe_ratio(gspo_log_ratio(batch)), batch, eps_low, eps_high)
    return _finish(loss_t, batch, agg, max_len, metrics)


def sapo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    tau_pos: float = 1.0,
    tau_neg: float = 1.05,
    agg: str = "seq-mean-token-mean",
    max_len: Optional[int] = None,
) -> tuple[torch.Tensor, Metrics]:
    """SAPO: soft gate instead of the clip, per token  -sigmoid(tau (r - 1)) * (4 / tau) * A.

    tau = tau_pos where A > 0, else tau_neg. The 4/tau factor makes d gate / d r = 1 at r = 1.
    """
    check_agg(agg)
    batch = prepare(logp, old_logp, advantages, mask)
    gate = sapo_gate(batch, tau_pos, tau_neg)
    loss_t = -gate * batch.adv
    return _finish(loss_t, batch, agg, max_len, {"gate_mean": masked_mean(gate.detach(), batch.mask)})


def cispo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps_high: float = 5.0,
    clip_eps_low: Optional[float] = None,
    agg: str = "token-mean",
    max_len: Optional[int] = None,
) -> tuple[torch.Tensor, Metrics]:
    """CISPO: REINFORCE with a clipped, stop-gradient IS weight, per token  -sg[clip(r, lo, 1+e_high)] * A * logp.

    lo = 0 (no lower clip) unless ``clip_eps_low`` is given (then 1 - clip_eps_low).
    """
    check_agg(agg)
    lower, upper = cispo_bounds(clip_eps_low, clip_eps_high)
    batch = prepare(logp, old_logp, advantages, mask)
    ratio = safe_ratio(batch.log_ratio).detach()
    loss_t = -ratio.clamp(lower, upper) * batch.adv * batch.logp
    return _finish(loss_t, batch, agg, max_len, clip_metrics(ratio > upper, ratio < lower, batch.mask))


def gmpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.4,
    clip_eps_low: Optional[float] = None,
    clip_eps_high: Optional[float] = None,
    agg: str = "seq-mean-token-mean",
    max_len: Optional[int] = None,
) -> tuple[torch.Tensor, Metrics]:
    """GMPO: geometric mean of token ratios, PPO-clipped per token in log space, on every token.

    l_t = sign(A) * min(sign(A) log r, sign(A) clip(log r, -e_low, e_high)); g = exp(mean_t l_t);
    per token -A * g (the response's value on each of its tokens, as in :func:`gspo_loss`).
    """
    check_agg(agg)
    eps_low, eps_high = clip_bounds(clip_eps, clip_eps_low, clip_eps_high)
    batch = prepare(logp, old_logp, advantages, mask)
    sign = torch.sign(batch.adv)
    log_r = batch.log_ratio
    clipped = sign * torch.minimum(sign * log_r, sign * log_r.clamp(-eps_low, eps_high))
    seq_ratio = safe_ratio(_sequence_log_ratio(clipped, batch))
    loss_t = -batch.adv * seq_ratio
    with torch.no_grad():
        high, low = gmpo_clipped(log_r, batch.adv, eps_low, eps_high)
    return _finish(loss_t, batch, agg, max_len, clip_metrics(high, low, batch.mask))


POLICY_LOSSES: dict[str, PolicyLoss] = {
    "mhpo": mhpo_loss,
    "grpo": grpo_loss,
    "dr_grpo": dr_grpo_loss,
    "dapo": dapo_loss,
    "gspo": gspo_loss,
    "sapo": sapo_loss,
    "cispo": cispo_loss,
    "gmpo": gmpo_loss,
}


def get_policy_loss(name: str) -> PolicyLoss:
    """The loss registered as ``name``; KeyError with the closest names otherwise."""
    if name in POLICY_LOSSES:
        return POLICY_LOSSES[name]
    close = difflib.get_close_matches(name, POLICY_LOSSES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise KeyError(f"unknown policy loss {name!r}{hint}; known: {', '.join(POLICY_LOSSES)}")


def loss_defaults(name: str) -> dict[str, Any]:
    """The keyword hyperparameters of loss ``name`` with their defaults, e.g. for docs and configs."""
    params = inspect.signature(get_policy_loss(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
