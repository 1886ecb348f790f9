"""What a rollout returns, and the backend interface a vLLM backend would implement."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


@dataclass
class SamplingParams:
    """How to sample: ``num_samples`` responses per prompt (temperature 0 = greedy)."""

    num_samples: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    stop_strings: list[str] = field(default_factory=list)
    return_logprobs: bool = False


@dataclass
class Rollout:
    """N = P * G sampled responses, grouped per prompt contiguously (rows p*G .. p*G+G-1).

    prompt_inputs: the P prompts' model inputs (left-padded input_ids (P, Lp), attention_mask, vision).
    response_ids (N, T) right-padded with pad; response_mask (N, T) 1 on response tokens incl. the EOS.
    logprobs (N, T) float32 sampling-time log-probs (log_softmax(logits / temperature)) when asked for.
    """

    prompt_inputs: dict[str, torch.Tensor]
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    texts: list[str]
    group_size: int
    truncated: torch.Tensor
    logprobs: torch.Tensor | None = None
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def response_lengths(self) -> torch.Tensor:
        """(N,) number of response tokens per sample."""
        return self.response_mask.sum(dim=1)

    def __len__(self) -> int:
        return self.response_ids.shape[0]


class RolloutBackend(Protocol):
    """Generates grouped samples; the trainer talks only to this interface.

    ``needs_weight_sync``: the backend samples from its own copy of the weights (vLLM), so the trainer
    calls ``sync_weights(pairs of (name, full tensor))`` after every optimizer step, and its sampling
    log-probs come from another engine (the trainer measures and corrects the mismatch).
    """

    needs_weight_sync: bool

    def generate(self, model: torch.nn.Module, batch: Any, params: SamplingParams) -> Rollout:
        ...
