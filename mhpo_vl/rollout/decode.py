"""Grouped sampling with one prefill per prompt and an in-place KV cache (the HF backend's decoder).

``transformers`` ``generate(num_return_sequences=G)`` repeats every prompt G times before the prefill and
grows its KV cache by concatenation (a new (N, H, L, D) tensor per layer and token). Here:

- each prompt is prefilled once (P rows, not P*G); its keys/values are copied G times into a buffer that
  holds the whole response budget (:class:`_BufferedLayer`), so a decode step writes one column in
  place and attends to a view; nothing per token is re-allocated but the step's activations;
- the attention mask for SDPA is built once (N, 1, 1, Lp+T) and sliced per step; position ids are
  those the prefill's positions continue to (M-RoPE offsets for Qwen-VL) plus the step;
- sampling draws one uniform per row and inverts the CDF (``searchsorted``): the same distribution as
  ``torch.multinomial``, without a (N, V) exponential draw per token; log-probs of the sampled tokens
  are log_softmax(logits / T) before suppression and top-k/top-p, as the policy loss computes them;
- the host looks at "have all rows ended?" only every ``check_every`` tokens.

The same model forward runs as in ``generate`` (any causal LM / Qwen-VL whose forward takes a
``transformers`` Cache); :func:`supports_fast_decode` says when a model can't (then the backend uses
``generate``).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper


class _BufferedLayer(DynamicLayer):
    """One layer's keys/values in a preallocated (N, H, capacity, D) buffer; ``keys``/``values`` are views."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, repeat: int, capacity: int) -> None:
        super().__init__()
        p, h, length, d = keys.shape
        self.key_buffer = keys.new_empty(p * repeat, h, capacity, d)
        self.value_buffer = values.new_empty(p * repeat, values.shape[1], capacity, values.shape[-1])
        # Row p*G + j holds prompt p's prefill (repeat_interleave order), written without a temporary.
        self.key_buffer.view(p, repeat, h, capacity, d)[:, :, :, :length] = keys[:, None]
        self.value_buffer.view(p, repeat, *self.value_buffer.shape[1:])[:, :, :, :length] = values[:, None]
        self.length = length
        self.device = keys.device
        self.is_initialized = True
        self._set_views()

    def _set_views(self) -> None:
        self.keys = self.key_buffer[:, :, : self.length]
        self.values = self.value_buffer[:, :, : self.length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        s = key_states.shape[-2]
        if self.length + s > self.key_buffer.shape[2]:
            raise RuntimeError(f"KV buffer full: {self.length} + {s} > {self.key_buffer.shape[2]}")
        self.key_buffer[:, :, self.length: self.length + s].copy_(key_states)
        self.value_buffer[:, :, self.length: self.length + s].copy_(value_states)
        self.length += s
        self._set_views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length


def cache_kwarg(model: torch.nn.Module) -> str:
    """The forward's name for the KV cache argument (``cache`` in newer transformers)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _base(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "get_base_model", lambda: model)()


def supports_fast_decode(model: torch.nn.Module) -> bool:
    """True for models this decoder drives: a ``transformers`` causal LM / Qwen-VL with a cache argument
    and full attention in every layer (no sliding window, no recurrent state)."""
    base = _base(model)
    config = getattr(base, "config", None)
    if config is None or not hasattr(config, "get_text_config"):
        return False
    text = config.get_text_config(decoder=True)
    layer_types = getattr(text, "layer_types", None) or ["full_attention"]
    params = inspect.signature(base.forward).parameters
    return set(layer_types) == {"full_attention"} and ("cache" in params or "past_key_values" in params)


def sample_tokens(logits: torch.Tensor) -> torch.Tensor:
    """One token per row from softmax(logits) (N, V) -> (N,), by inverting the CDF at one uniform per row.

    Rows may hold -inf (masked tokens); those are never drawn. Uses the global torch RNG.
    """
    probs = torch.softmax(logits, dim=-1)
    cdf = probs.cumsum_(dim=-1)
    u = torch.rand(logits.shape[0], 1, device=logits.device, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=logits.shape[-1] - 1)


class _Sampler:
    """Temperature, suppression, top-k/top-p and the sampled tokens' log-probs for one decode step."""

    def __init__(self, vocab: int, device: torch.device, *, temperature: float, top_k: int, top_p: float,
                 banned_ids: list[int]) -> None:
        self.greedy = temperature <= 0
        self.temperature = 1.0 if self.greedy else temperature
        self.bias = torch.zeros(vocab, device=device)
        if banned_ids:
            self.bias[torch.tensor(sorted(set(banned_ids)), device=device)] = float("-inf")
        self.warpers: list[Any] = []
        if not self.greedy and 0 < top_k < vocab:
            self.warpers.append(TopKLogitsWarper(top_k))
        if not self.greedy and top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))

    def __call__(self, logits: torch.Tensor, want_logprobs: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """logits (N, V) float32 -> tokens (N,), log p(token) (N,) under log_softmax(logits / T)."""
        scaled = logits / self.temperature if self.temperature != 1.0 else logits
        masked = scaled + self.bias
        if self.greedy:
            tokens = masked.argmax(dim=-1)
        else:
            for warp in self.warpers:
                masked = warp(None, masked)
            tokens = sample_tokens(masked)
        logp = None
        if want_logprobs:
            logp = scaled.gather(1, tokens[:, None]).squeeze(1) - torch.logsumexp(scaled, dim=-1)
        return tokens, logp


def first_positions(model: torch.nn.Module, inputs: dict[str, Any], group_size: int) -> torch.Tensor:
    """Position of the first response token per row, continuing the prefill's positions: for Qwen-VL
    prompts with images, the prompt's attended tokens + the prefill's M-RoPE offset (``rope_deltas``),
    as (3, N, 1); otherwise the padded prompt length (the prefill counted padding columns too), (N, 1)."""
    p, lp = inputs["input_ids"].shape
    deltas = getattr(getattr(_base(model), "model", None), "rope_deltas", None)
    if "image_grid_thw" in inputs and deltas is not None and deltas.shape[0] == p:
        first = inputs["attention_mask"].long().sum(dim=1, keepdim=True) + deltas.reshape(p, 1).to(inputs["input_ids"].device)
        return first.repeat_interleave(group_size, dim=0)[None].expand(3, -1, -1).contiguous()
    return torch.full((p * group_size, 1), lp, dtype=torch.long, device=inputs["input_ids"].device)


def _step_mask(model: torch.nn.Module, prompt_mask: torch.Tensor, group_size: int, capacity: int) -> Any:
    """A callable ``length -> attention_mask`` for decode steps. SDPA gets the 4D boolean mask, built once
    and sliced (no per-step mask construction); other attention kernels get the 2D mask (also a slice)."""
    n = prompt_mask.shape[0] * group_size
    full = torch.ones(n, capacity, dtype=torch.bool, device=prompt_mask.device)
    full[:, : prompt_mask.shape[1]] = prompt_mask.bool().repeat_interleave(group_size, dim=0)
    config = _base(model).config
    if getattr(config, "_attn_implementation", None) == "sdpa":
        four_d = full[:, None, None, :]
        return lambda length: four_d[..., :length]
    as_long = full.long()
    return lambda length: as_long[:, :length]


@torch.no_grad()
def sample_grouped(model: torch.nn.Module, inputs: dict[str, Any], *, group_size: int, max_new_tokens: int,
                   temperature: float, top_k: int = 0, top_p: float = 1.0, eos_ids: list[int], pad_id: int,
                   banned_ids: list[int] | None = None, return_logprobs: bool = False, check_every: int = 8
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sample ``group_size`` responses for each of the P prompts in ``inputs`` (left-padded model inputs).

    Returns response ids (N, T') with N = P*G in prompt-major order, pad after a row's first EOS, and
    (with ``return_logprobs``) the sampled tokens' log_softmax(logits / T) (N, T'); T' <= max_new_tokens
    (shorter when every row ended). temperature <= 0 is greedy.
    """
    g = group_size
    p, lp = inputs["input_ids"].shape
    n = p * g
    capacity = lp + max_new_tokens
    cache_key = cache_kwarg(model)
    out = model(**inputs, **{cache_key: DynamicCache()}, use_cache=True, logits_to_keep=1)
    cache = getattr(out, "cache", None)
    cache = out.past_key_values if cache is None else cache
    cache.layers = [_BufferedLayer(layer.keys, layer.values, g, capacity) for layer in cache.layers]
    logits = out.logits[:, -1].float().repeat_interleave(g, dim=0)
    device = logits.device
    sampler = _Sampler(logits.shape[-1], device, temperature=temperature, top_k=top_k, top_p=top_p,
                       banned_ids=banned_ids or [])
    mask_at = _step_mask(model, inputs["attention_mask"], g, capacity)
    position = first_positions(model, inputs, g)
    ids = torch.full((n, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logps = torch.zeros(n, max_new_tokens, device=device) if return_logprobs else None
    eos = torch.tensor(eos_ids, device=device)
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    steps = max_new_tokens
    for s in range(max_new_tokens):
        tokens, logp = sampler(logits, return_logprobs)
        tokens = tokens.masked_fill_(finished, pad_id)
        ids[:, s] = tokens
        if logps is not None:
            logps[:, s] = logp.masked_fill_(finished, 0.0)
        finished |= torch.isin(tokens, eos)
        if s == max_new_tokens - 1 or ((s + 1) % check_every == 0 and bool(finished.all())):
            steps = s + 1
            break
        out = model(input_ids=tokens[:, None], attention_mask=mask_at(lp + s + 1), position_ids=position + s,
                    **{cache_key: cache}, use_cache=True, logits_to_keep=1)
        logits = out.logits[:, -1].float()
    return ids[:, :steps], None if logps is None else logps[:, :steps]
