"""Rollout/training mismatch correction: importance weights between the trainer and the sampler.

A fast sampler (vLLM) and the trainer compute slightly different probabilities for the same tokens
(other kernels, precision). Responses are sampled from the sampler's distribution mu, while the loss
treats them as samples of the trainer's pi_old. Truncated importance sampling (TIS; Yao et al. 2025,
as in TRL, verl and ms-swift) reweights each token by rho_t = pi_old(y_t) / mu(y_t):

    token_tis: w_t = min(rho_t, cap)                          per token, truncated
    seq_mis:   rho = exp(sum_t log rho_t) per response;     responses with rho outside [1/cap, cap]
               get weight 0 (masked), the others weight 1
    none:      w_t = 1 (the mismatch is still measured)

The weights are detached and multiply the advantages (every policy loss is linear in a positive
per-token scale of the advantage), so they need no change to the losses.

    weights, metrics = rollout_is_weights(trainer_logp, sampler_logp, mask, mode="token_tis", cap=2.0)
    advantages = advantages[:, None] * weights                        # (N, T)
"""

from __future__ import annotations

import torch

from mhpo_vl.algos.aggregation import as_bool_mask, masked_fraction, masked_mean, masked_min_max

ROLLOUT_IS_MODES = ("none", "token_tis", "seq_mis")
# exp() of a log-ratio is taken after clamping, so a wild mismatch gives a large finite weight, not inf.
_LOG_CLAMP = 20.0


def rollout_is_weights(trainer_logp: torch.Tensor, sampler_logp: torch.Tensor, mask: torch.Tensor, *,
                       mode: str = "token_tis", cap: float = 2.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Detached importance weights (N, T) (0 at masked positions) and the mismatch metrics.

    trainer_logp, sampler_logp, mask: (N, T). Metrics (scalar tensors, keys without prefix):
    ``logprob_abs_diff_mean|max`` (|trainer - sampler| over response tokens), ``is_weight_mean|max``
    (the untruncated ratio rho: per token, or per response for seq_mis), ``masked_frac`` (the share of
    response tokens given weight 0).
    """
    if mode not in ROLLOUT_IS_MODES:
        raise ValueError(f"rollout_is mode must be one of {', '.join(ROLLOUT_IS_MODES)}, got {mode!r}")
    if not cap > 1.0:
        raise ValueError(f"rollout_is_cap must be > 1, got {cap!r}")
    if trainer_logp.shape != sampler_logp.shape or mask.shape != trainer_logp.shape:
        raise ValueError(f"shapes differ: trainer {tuple(trainer_logp.shape)}, sampler "
                         f"{tuple(sampler_logp.shape)}, mask {tuple(mask.shape)}")
    valid = as_bool_mask(mask)
    with torch.no_grad():
        zero = torch.zeros((), dtype=torch.float32, device=trainer_logp.device)
        log_rho = torch.where(valid, trainer_logp.float() - sampler_logp.float(), zero)
        diff = log_rho.abs()
        metrics = {"logprob_abs_diff_mean": masked_mean(diff, valid),
                   "logprob_abs_diff_max": masked_min_max(diff, valid, empty=0.0)[1]}
        rho = torch.exp(log_rho.clamp(-_LOG_CLAMP, _LOG_CLAMP))
        if mode == "seq_mis":
            seq_rho = torch.exp(log_rho.sum(dim=1).clamp(-_LOG_CLAMP, _LOG_CLAMP))  # (N,)
            rows = valid.any(dim=1)
            keep = (seq_rho <= cap) & (seq_rho >= 1.0 / cap)
            weights = (keep[:, None] & valid).float()
            metrics["is_weight_mean"] = masked_mean(seq_rho, rows)
            metrics["is_weight_max"] = masked_min_max(seq_rho, rows)[1]
        else:
            weights = torch.where(valid, rho.clamp(max=cap) if mode == "token_tis" else torch.ones_like(rho), zero)
            metrics["is_weight_mean"] = masked_mean(rho, valid)
            metrics["is_weight_max"] = masked_min_max(rho, valid)[1]
        metrics["masked_frac"] = masked_fraction(weights == 0, valid)
    return weights, metrics
