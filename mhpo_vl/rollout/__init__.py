"""Grouped generation (HF generate; vLLM can plug in behind RolloutBackend) and response log-probs."""

from typing import Any

import torch

from mhpo_vl.rollout.hf import HFRolloutBackend, response_mask_from_ids
from mhpo_vl.rollout.logprobs import build_sequence_inputs, micro_batches, select_rows, token_logprobs
from mhpo_vl.rollout.types import Rollout, RolloutBackend, SamplingParams
from mhpo_vl.rollout.vision import encode_images_once, expand_inputs


def generate(model: torch.nn.Module, processor: Any, batch: Any, *, num_samples: int = 1,
             temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, max_new_tokens: int = 256,
             stop_strings: list[str] | None = None, return_logprobs: bool = False) -> Rollout:
    """Sample ``num_samples`` responses per prompt of ``batch`` (a PromptBatch) with HF generate."""
    params = SamplingParams(num_samples=num_samples, temperature=temperature, top_p=top_p, top_k=top_k,
                            max_new_tokens=max_new_tokens, stop_strings=list(stop_strings or []),
                            return_logprobs=return_logprobs)
    return HFRolloutBackend(processor).generate(model, batch, params)


__all__ = ["HFRolloutBackend", "Rollout", "RolloutBackend", "SamplingParams", "build_sequence_inputs",
           "encode_images_once", "expand_inputs", "generate", "micro_batches",
           "response_mask_from_ids", "select_rows", "token_logprobs"]
