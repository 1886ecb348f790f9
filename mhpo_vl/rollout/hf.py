"""Grouped generation with transformers ``generate``.

The sampling warpers are applied by us, after a processor that records the raw logits' log-softmax at
the sampling temperature, so the rollout returns the same per-token log-probs the policy loss computes
(``log_softmax(logits / T)``) without a second forward pass. Vision special tokens are suppressed, and a
fresh GenerationConfig keeps a checkpoint's own sampling defaults (e.g. repetition penalty) out of RL.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from mhpo_vl.models.processor import get_tokenizer
from mhpo_vl.rollout.decode import sample_grouped, supports_fast_decode
from mhpo_vl.rollout.types import Rollout, SamplingParams

VISION_SPECIAL_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")


class _LogprobRecorder(LogitsProcessor):
    """Records log p(token) of each sampled token from the raw logits (scaled by 1/temperature).

    Called once per new token with the scores for that position; the token chosen at the previous call
    is the last column of ``input_ids``. Keeps only one step of log-probs in memory: (N, V).
    """

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature
        self.previous: torch.Tensor | None = None
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._collect(input_ids[:, -1])
        self.previous = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def _collect(self, chosen: torch.Tensor) -> None:
        if self.previous is not None:
            self.steps.append(self.previous.gather(1, chosen[:, None]).squeeze(1))
            self.previous = None

    def finish(self, last_tokens: torch.Tensor) -> torch.Tensor:
        self._collect(last_tokens)
        return torch.stack(self.steps, dim=1) if self.steps else torch.zeros(last_tokens.shape[0], 0)


class _SuppressTokens(LogitsProcessor):
    def __init__(self, token_ids: list[int]) -> None:
        self.token_ids = torch.tensor(sorted(set(token_ids)), dtype=torch.long)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if len(self.token_ids):
            scores[:, self.token_ids.to(scores.device)] = float("-inf")
        return scores


def eos_token_ids(model: torch.nn.Module, tokenizer: Any) -> list[int]:
    """EOS ids from the model's generation config, falling back to the tokenizer's."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ids is None:
        ids = tokenizer.eos_token_id
    ids = ids if isinstance(ids, list) else [ids]
    return [int(i) for i in ids if i is not None]


def vision_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the image/video placeholder tokens present in the vocabulary."""
    vocab = tokenizer.get_vocab()
    return [vocab[t] for t in VISION_SPECIAL_TOKENS if t in vocab]


def response_mask_from_ids(response_ids: torch.Tensor, eos_ids: list[int], pad_id: int,
                           stopped_by_string: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, truncated): 1 up to and including the first EOS; rows without EOS are truncated.

    response_ids: (N, T). Rows stopped by a stop string end at their last non-pad token.
    """
    n, t = response_ids.shape
    positions = torch.arange(t).expand(n, t)
    is_eos = torch.isin(response_ids, torch.tensor(eos_ids, device=response_ids.device))
    has_eos = is_eos.any(dim=1)
    first_eos = torch.where(has_eos, is_eos.float().argmax(dim=1), torch.full((n,), t))
    end = torch.where(has_eos, first_eos + 1, torch.full((n,), t))
    if stopped_by_string is not None and stopped_by_string.any():
        not_pad = response_ids != pad_id
        last = torch.where(not_pad.any(1), t - 1 - not_pad.flip(1).float().argmax(1), torch.zeros(n, dtype=torch.long))
        end = torch.where(stopped_by_string & ~has_eos, last + 1, end)
    mask = (positions < end[:, None]).long()
    truncated = ~has_eos & (end >= t)
    if stopped_by_string is not None:
        truncated &= ~stopped_by_string
    return mask, truncated


class HFRolloutBackend:
    """Rollouts with the trainer's own model: no weight sync, and its log-probs are exact.

    ``decoder="fast"`` (default) samples with :func:`mhpo_vl.rollout.decode.sample_grouped` (one prefill
    per prompt shared by its G samples, an in-place KV buffer); ``"generate"`` uses ``model.generate``
    (each image encoded once, then expanded to G samples). Stop strings, and models the fast decoder does
    not drive, always use ``generate``.
    """

    needs_weight_sync = False

    def __init__(self, processor: Any, decoder: str = "fast") -> None:
        if decoder not in ("fast", "generate"):
            raise ValueError(f"unknown HF decoder {decoder!r}; choose fast or generate")
        self.processor = processor
        self.tokenizer = get_tokenizer(processor)
        self.decoder = decoder

    def generate(self, model: torch.nn.Module, batch: Any, params: SamplingParams) -> Rollout:
        tok = self.tokenizer
        inputs = {k: v.to(model.device) for k, v in batch.inputs.items()}
        eos_ids = eos_token_ids(model, tok)
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else eos_ids[0]
        if self.decoder == "fast" and not params.stop_strings and supports_fast_decode(model):
            return self._generate_fast(model, batch, inputs, params, eos_ids, pad_id)
        greedy = params.temperature <= 0
        temperature = 1.0 if greedy else params.temperature
        recorder = _LogprobRecorder(temperature) if params.return_logprobs else None
        processors: list[LogitsProcessor] = [recorder] if recorder else []
        processors.append(_SuppressTokens(vision_token_ids(tok)))
        if not greedy:
            processors.append(TemperatureLogitsWarper(temperature))
            if params.top_k > 0:
                processors.append(TopKLogitsWarper(params.top_k))
            if params.top_p < 1.0:
                processors.append(TopPLogitsWarper(params.top_p))
        # Sampling warpers are ours (above); neutral values here keep a checkpoint's defaults out (top_k 0, not
        # None: generate fills None with its global default of 50).
        neutral = {} if greedy else {"temperature": 1.0, "top_p": 1.0, "top_k": 0}
        gen_config = GenerationConfig(
            do_sample=not greedy, max_new_tokens=params.max_new_tokens, num_return_sequences=params.num_samples,
            eos_token_id=eos_ids, pad_token_id=pad_id, stop_strings=list(params.stop_strings) or None, **neutral,
        )
        extra: dict[str, Any] = {"tokenizer": tok} if params.stop_strings else {}
        was_training = model.training
        model.eval()
        with torch.no_grad():
            sequences = model.generate(**inputs, generation_config=gen_config,
                                       logits_processor=LogitsProcessorList(processors), **extra)
        model.train(was_training)
        prompt_len = inputs["input_ids"].shape[1]
        response_ids = sequences[:, prompt_len:].cpu()
        stopped = None
        if params.stop_strings:
            texts_raw = tok.batch_decode(response_ids, skip_special_tokens=True)
            stopped = torch.tensor([any(s in t for s in params.stop_strings) for t in texts_raw])
        mask, truncated = response_mask_from_ids(response_ids, eos_ids, pad_id, stopped)
        response_ids = torch.where(mask.bool(), response_ids, torch.full_like(response_ids, pad_id))
        texts = tok.batch_decode(response_ids, skip_special_tokens=True)
        logprobs = None
        if recorder is not None:
            logprobs = recorder.finish(sequences[:, -1]).cpu()[:, : response_ids.shape[1]]
            logprobs = torch.where(mask.bool(), logprobs, torch.zeros_like(logprobs))
        return Rollout(prompt_inputs=batch.inputs, response_ids=response_ids, response_mask=mask, texts=texts,
                       group_size=params.num_samples, truncated=truncated, logprobs=logprobs,
                       records=list(batch.records))

    def _generate_fast(self, model: torch.nn.Module, batch: Any, inputs: dict[str, Any], params: SamplingParams,
                       eos_ids: list[int], pad_id: int) -> Rollout:
        was_training = model.training
        model.eval()
        response_ids, logprobs = sample_grouped(
            model, inputs, group_size=params.num_samples, max_new_tokens=params.max_new_tokens,
            temperature=params.temperature, top_k=params.top_k, top_p=params.top_p, eos_ids=eos_ids, pad_id=pad_id,
            banned_ids=vision_token_ids(self.tokenizer), return_logprobs=params.return_logprobs)
        model.train(was_training)
        response_ids = response_ids.cpu()
        mask, truncated = response_mask_from_ids(response_ids, eos_ids, pad_id)
        texts = self.tokenizer.batch_decode(response_ids, skip_special_tokens=True)
        return Rollout(prompt_inputs=batch.inputs, response_ids=response_ids, response_mask=mask, texts=texts,
                       group_size=params.num_samples, truncated=truncated,
                       logprobs=None if logprobs is None else logprobs.cpu(), records=list(batch.records))
