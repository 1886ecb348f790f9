"""Per-token log-probs of responses under a policy (with grad when training).

The forward runs on [prompt ; response] and computes logits only for the response positions
(``logits_to_keep``), so memory is O(N * T * V), not O(N * (Lp + T) * V).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from mhpo_vl.rollout.types import Rollout
from mhpo_vl.rollout.vision import (
    TEXT_KEYS,
    encode_images_once,
    expand_inputs,
    images_per_prompt,
    repeat_encoded,
)


def build_sequence_inputs(rollout: Rollout, model: torch.nn.Module, vision_start_id: int | None,
                          reuse_vision: bool = True, encoded: Any | None = None) -> dict[str, Any]:
    """Model inputs for all N = P*G [prompt ; response] rows of a rollout.

    With ``reuse_vision`` the vision tower runs once per prompt (not per sample) and its outputs are passed
    as ``mm_encoder_outputs``; gradients still flow into it when it is trainable. ``encoded``: the P
    prompts' vision outputs (vision.encode_images) when the caller has them already.
    """
    g = rollout.group_size
    prompt = {k: v.to(model.device) for k, v in rollout.prompt_inputs.items()}
    expanded = expand_inputs(prompt, g, vision_start_id)
    response_ids = rollout.response_ids.to(model.device)
    response_mask = rollout.response_mask.to(model.device)
    inputs: dict[str, Any] = {
        "input_ids": torch.cat([expanded["input_ids"], response_ids], dim=1),
        "attention_mask": torch.cat([expanded["attention_mask"], response_mask], dim=1),
    }
    if "mm_token_type_ids" in expanded:
        zeros = torch.zeros_like(response_ids, dtype=expanded["mm_token_type_ids"].dtype)
        inputs["mm_token_type_ids"] = torch.cat([expanded["mm_token_type_ids"], zeros], dim=1)
    if "image_grid_thw" in expanded:
        inputs["image_grid_thw"] = expanded["image_grid_thw"]
        if encoded is not None:
            encoded = repeat_encoded(encoded, images_per_prompt(prompt["input_ids"], vision_start_id), g)
        elif reuse_vision:
            encoded = encode_images_once(model, prompt, g, vision_start_id)
        if encoded is not None:
            inputs["mm_encoder_outputs"] = {"image": encoded}
        else:
            inputs["pixel_values"] = expanded["pixel_values"]
    return inputs


def select_rows(inputs: dict[str, Any], rows: slice, vision_start_id: int | None) -> dict[str, Any]:
    """Sequence rows ``rows`` of build_sequence_inputs' output, with the images that belong to them."""
    out: dict[str, Any] = {k: inputs[k][rows] for k in TEXT_KEYS if k in inputs}
    image_rows = _image_rows(inputs, vision_start_id, rows)
    # rows without images (a text-only micro-batch of a mixed batch) get no image inputs at all
    if "image_grid_thw" in inputs and image_rows is not None and image_rows.stop > image_rows.start:
        grid = inputs["image_grid_thw"]
        out["image_grid_thw"] = grid[image_rows]
        if "pixel_values" in inputs:
            patches = grid.prod(-1)
            start = int(patches[: image_rows.start].sum())
            stop = int(patches[: image_rows.stop].sum())
            out["pixel_values"] = inputs["pixel_values"][start:stop]
        if "mm_encoder_outputs" in inputs:
            out["mm_encoder_outputs"] = {"image": _slice_encoder(inputs["mm_encoder_outputs"]["image"], image_rows)}
    return out


def _slice_encoder(encoded: Any, image_rows: slice) -> Any:
    part = copy.copy(encoded)
    pooled = list(encoded.pooler_output)
    part.pooler_output = tuple(pooled[image_rows])
    deepstack = getattr(encoded, "deepstack_features", None)
    if deepstack is not None:
        part.deepstack_features = [tuple(list(layer)[image_rows]) for layer in deepstack]
    return part


def _image_rows(inputs: dict[str, Any], vision_start_id: int | None, rows: slice) -> slice | None:
    """The slice of images (in concatenation order) that belong to sequence rows ``rows``."""
    if "image_grid_thw" not in inputs or vision_start_id is None:
        return None
    counts = images_per_prompt(inputs["input_ids"], vision_start_id)
    start = sum(counts[: rows.start])
    return slice(start, start + sum(counts[rows]))


def response_logits(model: torch.nn.Module, inputs: dict[str, Any], t: int, temperature: float = 1.0) -> torch.Tensor:
    """float32 logits / T that predict the last ``t`` tokens of each sequence in ``inputs``: (N, t, V)."""
    out = model(**inputs, logits_to_keep=t + 1, use_cache=False)
    logits = out.logits[:, -(t + 1):-1, :].float()
    return logits / temperature if temperature != 1.0 else logits


LogitsSink = Callable[[torch.Tensor, torch.Tensor], None]
"""Sees a forward's response logits / T (N, t, V) and token ids (N, t), t <= T (trailing padding cut)."""


def token_logprobs(model: torch.nn.Module, inputs: dict[str, Any], response_ids: torch.Tensor,
                   temperature: float = 1.0, with_entropy: bool = False, logits_sink: LogitsSink | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log softmax(logits / T) of each response token: (N, T) float32, and optionally entropy (N, T).

    ``inputs`` holds N full sequences whose last T tokens are ``response_ids`` (N, T). Padding columns
    that no row attends to are not run: those after the longest response and, for text-only inputs,
    the leading prompt padding (see :func:`trim_padding`); their outputs are 0. ``logits_sink`` sees the
    logits (with grad: detach what you keep).
    """
    full_t = response_ids.shape[1]
    inputs, response_ids = trim_padding(inputs, response_ids)
    logits = response_logits(model, inputs, response_ids.shape[1], temperature)
    return logprobs_from_logits(logits, response_ids.to(logits.device), full_t, with_entropy, logits_sink)


def logprobs_from_logits(logits: torch.Tensor, response_ids: torch.Tensor, full_t: int, with_entropy: bool = False,
                         logits_sink: LogitsSink | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of ``response_ids`` (N, t) under ``logits`` (N, t, V), and optionally the entropy (no grad),
    both right-padded with 0 to (N, full_t)."""
    if logits_sink is not None:
        logits_sink(logits, response_ids)
    t = response_ids.shape[1]
    log_norm = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, response_ids[..., None]).squeeze(-1) - log_norm
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = log_norm - (torch.softmax(logits, dim=-1) * logits).sum(-1)
    if t < full_t:
        logp = F.pad(logp, (0, full_t - t))
        entropy = None if entropy is None else F.pad(entropy, (0, full_t - t))
    return logp, entropy


def trim_padding(inputs: dict[str, Any], response_ids: torch.Tensor) -> tuple[dict[str, Any], torch.Tensor]:
    """Drop sequence columns no row attends to: after the longest response, and (text-only inputs) before
    the longest prompt. ``inputs``' attention mask is [prompt ; response] with T = response_ids.shape[1].

    Dropping leading columns shifts every row's positions by the same amount, which rotary attention
    does not see; inputs with images keep their prompt columns (their position ids come from the mask).
    """
    mask = inputs.get("attention_mask")
    t = response_ids.shape[1]
    if mask is None or t == 0:
        return inputs, response_ids
    attended = mask.bool().any(dim=0)  # (L,)
    resp = attended[-t:]
    keep_t = int(resp.nonzero().max()) + 1 if resp.any() else 1
    drop_right = t - keep_t
    text_only = set(inputs) <= set(TEXT_KEYS)
    drop_left = int(attended.int().argmax()) if text_only and attended.any() else 0
    drop_left = min(drop_left, mask.shape[1] - t - 1)  # keep at least one prompt column
    if drop_left <= 0 and drop_right <= 0:
        return inputs, response_ids
    stop = mask.shape[1] - drop_right
    trimmed = {k: (v[:, max(drop_left, 0):stop] if k in TEXT_KEYS else v) for k, v in inputs.items()}
    return trimmed, response_ids[:, :keep_t]


def micro_batches(n_rows: int, size: int) -> list[slice]:
    """Row slices of at most ``size`` (0 = all rows in one)."""
    size = size or n_rows
    return [slice(i, min(i + size, n_rows)) for i in range(0, n_rows, size)]
