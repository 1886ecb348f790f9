"""Training log-probs with each prompt run once for its G responses (shared-prefix forward).

A full forward over [prompt ; response] repeats the prompt's compute G times (and the image tokens with
it). Here the P prompts run once with a KV cache, the cache is repeated G times along the batch
(``repeat_interleave``, differentiable: the prompt's gradient is the sum over its G responses), and
the N = P*G responses run on top of it. The first response token is predicted by the prompt's last
position. Mathematically the same log-probs as :func:`mhpo_vl.rollout.logprobs.token_logprobs` on the
full sequences; used by the policy update when micro-batches hold whole groups.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicCache

from mhpo_vl.rollout.decode import cache_kwarg, first_positions, supports_fast_decode
from mhpo_vl.rollout.logprobs import LogitsSink, build_sequence_inputs, logprobs_from_logits
from mhpo_vl.rollout.types import Rollout
from mhpo_vl.rollout.vision import encode_images


def shared_prefix_supported(model: torch.nn.Module) -> bool:
    """True when the model takes a KV cache in training (full attention, no gradient checkpointing)."""
    base = getattr(model, "get_base_model", lambda: model)()
    # transformers 5.x names the flag is_activation_checkpointing (is_gradient_checkpointing warns)
    flag = "is_activation_checkpointing" if hasattr(type(base), "is_activation_checkpointing") else "is_gradient_checkpointing"
    return supports_fast_decode(model) and not getattr(base, flag, False)


def build_prompt_inputs(prompt_inputs: dict[str, torch.Tensor], model: torch.nn.Module, vision_start_id: int | None,
                        reuse_vision: bool = True, encoded: Any | None = None) -> dict[str, Any]:
    """The P prompts' model inputs on the model's device; with ``reuse_vision`` the (frozen) vision tower's
    outputs replace the pixels (``mm_encoder_outputs``), as in build_sequence_inputs. ``encoded``: those
    outputs when the caller has them already (vision.encode_images)."""
    inputs = {k: v.to(model.device) for k, v in prompt_inputs.items()}
    if reuse_vision and "pixel_values" in inputs:
        encoded = encode_images(model, inputs) if encoded is None else encoded
        if encoded is not None:
            inputs.pop("pixel_values")
            inputs["mm_encoder_outputs"] = {"image": encoded}
    return inputs


def build_update_inputs(rollout: Rollout, model: torch.nn.Module, vision_start_id: int | None, *,
                        reuse_vision: bool, shared_prefix: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the N full sequences' inputs, the P prompts' inputs or None) for the policy update; with
    ``reuse_vision`` the vision tower runs once for both."""
    encoded = None
    if reuse_vision:
        encoded = encode_images(model, {k: v.to(model.device) for k, v in rollout.prompt_inputs.items()})
    inputs = build_sequence_inputs(rollout, model, vision_start_id, reuse_vision=reuse_vision, encoded=encoded)
    if not shared_prefix:
        return inputs, None
    return inputs, build_prompt_inputs(rollout.prompt_inputs, model, vision_start_id, reuse_vision=reuse_vision,
                                       encoded=encoded)


def shared_prefix_logprobs(model: torch.nn.Module, prompt_inputs: dict[str, Any], response_ids: torch.Tensor,
                           response_mask: torch.Tensor, group_size: int, temperature: float = 1.0,
                           with_entropy: bool = False, logits_sink: LogitsSink | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log softmax(logits / T) of each response token, (N, T) float32, and optionally the entropy (N, T).

    prompt_inputs: P left-padded prompts (build_prompt_inputs); response_ids/response_mask (N, T) with
    N = P * group_size, rows p*G .. p*G+G-1 answering prompt p. Columns after the longest response are
    not run; their outputs are 0. ``logits_sink`` as in :func:`mhpo_vl.rollout.logprobs.token_logprobs`.
    """
    g = group_size
    full_t = response_ids.shape[1]
    attended = response_mask.bool().any(dim=0)
    t = int(attended.nonzero().max()) + 1 if attended.any() else 1
    ids = response_ids[:, :t].to(model.device)
    mask = response_mask[:, :t].to(model.device)
    key = cache_kwarg(model)
    out = model(**prompt_inputs, **{key: DynamicCache()}, use_cache=True, logits_to_keep=1)
    cache = getattr(out, "cache", None)
    cache = out.past_key_values if cache is None else cache
    first = out.logits[:, -1:].float().repeat_interleave(g, dim=0)  # (N, 1, V): predicts response token 0
    parts = [first]
    if t > 1:
        for layer in cache.layers:
            layer.keys = layer.keys.repeat_interleave(g, dim=0)
            layer.values = layer.values.repeat_interleave(g, dim=0)
        prompt_mask = prompt_inputs["attention_mask"].repeat_interleave(g, dim=0)
        steps = torch.arange(t - 1, device=ids.device)
        positions = first_positions(model, prompt_inputs, g) + steps  # (N, t-1) or (3, N, t-1)
        rest = model(input_ids=ids[:, :-1], attention_mask=torch.cat([prompt_mask, mask[:, :-1]], dim=1),
                     position_ids=positions, **{key: cache}, use_cache=True)
        parts.append(rest.logits.float())
    logits = torch.cat(parts, dim=1)
    if temperature != 1.0:
        logits = logits / temperature
    return logprobs_from_logits(logits, ids, full_t, with_entropy, logits_sink)
