"""The trainer's log-probs of sampled tokens under the sampler's own (processed) distribution.

vLLM reports "processed" log-probs: log_softmax of logits / T after its logit masks (the suppressed
vision tokens) and after top-k / top-p truncation. The policy loss uses the plain log_softmax(logits / T).
To measure only the numerical mismatch between the two engines (kernels, precision), the trainer
recomputes the sampled tokens' log-probs with the same masks and truncation; this module does that
from the trainer's logits, following vLLM's rules (sort ascending, top-k by threshold, drop the
low-probability tail whose cumulative mass is <= 1 - p, always keep the most likely token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from mhpo_vl.rollout.logprobs import token_logprobs


def processed_logprobs(logits: torch.Tensor, response_ids: torch.Tensor, *, top_k: int = 0, top_p: float = 1.0,
                       banned_ids: list[int] | None = None) -> torch.Tensor:
    """log p(token) after masking ``banned_ids`` and top-k / top-p truncation.

    logits: (N, T, V) float, already divided by the temperature; response_ids (N, T) -> (N, T).
    """
    logits = logits.clone()
    if banned_ids:
        logits[..., torch.tensor(banned_ids, device=logits.device)] = float("-inf")
    vocab = logits.shape[-1]
    if 0 < top_k < vocab or top_p < 1.0:
        ordered, _ = logits.sort(dim=-1)  # ascending
        drop = torch.zeros_like(logits, dtype=torch.bool)
        if 0 < top_k < vocab:
            kth = ordered[..., vocab - top_k: vocab - top_k + 1]
            drop |= logits < kth
            ordered = ordered.masked_fill(ordered < kth, float("-inf"))
        if top_p < 1.0:
            cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
            tail = cumulative <= 1.0 - top_p
            tail[..., -1] = False
            # The largest logit that is dropped: every logit at or below it goes.
            cut = torch.where(tail, ordered, torch.full_like(ordered, float("-inf"))).amax(dim=-1, keepdim=True)
            drop |= logits <= cut
        logits = logits.masked_fill(drop, float("-inf"))
    chosen = logits.gather(-1, response_ids[..., None].to(logits.device)).squeeze(-1)
    return chosen - torch.logsumexp(logits, dim=-1)


@dataclass(frozen=True)
class SamplerView:
    """The sampler's logit processing, to compute its "processed" log-probs from the trainer's logits."""

    top_k: int = 0
    top_p: float = 1.0
    banned_ids: tuple[int, ...] = ()

    def logprobs(self, logits: torch.Tensor, response_ids: torch.Tensor) -> torch.Tensor:
        """logits (N, T, V) / temperature, response_ids (N, T) -> processed log-probs (N, T), detached."""
        with torch.no_grad():
            return processed_logprobs(logits.detach().float(), response_ids, top_k=self.top_k, top_p=self.top_p,
                                      banned_ids=list(self.banned_ids))


def logprobs_with_sampler_view(model: torch.nn.Module, inputs: dict[str, Any], response_ids: torch.Tensor, *,
                               temperature: float, view: SamplerView) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward (token_logprobs, padding trimmed): (plain log_softmax(logits / T), the same tokens under
    the sampler's processed distribution ``view``), both (N, T) float32, 0 after the longest response."""
    processed: list[torch.Tensor] = []
    plain, _ = token_logprobs(model, inputs, response_ids, temperature,
                              logits_sink=lambda logits, ids: processed.append(view.logprobs(logits, ids)))
    return plain, F.pad(processed[0], (0, response_ids.shape[1] - processed[0].shape[1]))
