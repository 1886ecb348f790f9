"""Repeat per-prompt model inputs for G samples per prompt, encoding each image only once.

A batch of P prompts with G samples each becomes N = P*G sequences. Text tensors repeat along the batch
(``repeat_interleave``). Vision tensors are concatenated over images, so they repeat block-wise per
prompt. ``encode_images_once`` runs the vision tower once for the P prompts and expands its outputs, so
the training forward passes ``mm_encoder_outputs`` instead of G copies of the pixels.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

TEXT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")


def images_per_prompt(input_ids: torch.Tensor, vision_start_id: int | None) -> list[int]:
    """Number of images in each prompt row, counted by vision-start tokens. input_ids: (P, L)."""
    if vision_start_id is None:
        return [0] * input_ids.shape[0]
    return (input_ids == vision_start_id).sum(dim=1).tolist()


def image_order(counts: list[int], prompts: list[int], repeat: int = 1) -> list[int]:
    """Indices of the images of ``prompts`` (each repeated ``repeat`` times), in concatenation order.

    ``counts[p]`` is the number of images of prompt p in the original batch.
    """
    starts = [0]
    for c in counts:
        starts.append(starts[-1] + c)
    index: list[int] = []
    for p in prompts:
        index.extend(list(range(starts[p], starts[p] + counts[p])) * repeat)
    return index


def patch_rows(per_image_rows: torch.Tensor, image_index: list[int]) -> torch.Tensor:
    """Row indices into a tensor concatenated over images, for the given image order. per_image_rows: (n_img,)"""
    starts = torch.cumsum(per_image_rows, 0) - per_image_rows
    parts = [torch.arange(int(starts[i]), int(starts[i] + per_image_rows[i])) for i in image_index]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def expand_inputs(inputs: dict[str, torch.Tensor], group_size: int, vision_start_id: int | None) -> dict[str, Any]:
    """Repeat every prompt's inputs ``group_size`` times (text tensors and pixel blocks)."""
    out: dict[str, Any] = {}
    for key in TEXT_KEYS:
        if key in inputs:
            out[key] = inputs[key].repeat_interleave(group_size, dim=0)
    if "image_grid_thw" in inputs:
        counts = images_per_prompt(inputs["input_ids"], vision_start_id)
        index = image_order(counts, list(range(len(counts))), group_size)
        grid = inputs["image_grid_thw"]
        out["image_grid_thw"] = grid[index]
        out["pixel_values"] = inputs["pixel_values"][patch_rows(grid.prod(-1), index)]
    return out


def encode_images(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> Any | None:
    """Vision-tower outputs of the images in ``inputs`` (P prompts), one entry per image in concatenation
    order; None when there are no pixels or the model can't take precomputed outputs."""
    if "pixel_values" not in inputs:
        return None
    base = getattr(model, "get_base_model", lambda: model)()
    inner = getattr(base, "model", None)
    if inner is None or not hasattr(inner, "get_image_features"):
        return None
    return inner.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"], return_dict=True)


def repeat_encoded(outputs: Any, counts: list[int], group_size: int) -> Any:
    """encode_images' outputs with each prompt's images repeated ``group_size`` times, in the order of
    :func:`expand_inputs` (a copy; ``outputs`` is unchanged). ``counts[p]``: images of prompt p."""
    if group_size == 1:
        return outputs
    index = image_order(counts, list(range(len(counts))), group_size)
    repeated = copy.copy(outputs)
    per_image = list(outputs.pooler_output)
    repeated.pooler_output = tuple(per_image[i] for i in index)
    deepstack = getattr(outputs, "deepstack_features", None)
    if deepstack is not None:  # Qwen3-VL: per layer, a tuple of per-image features
        repeated.deepstack_features = [tuple(list(layer)[i] for i in index) for layer in deepstack]
    return repeated


def encode_images_once(model: torch.nn.Module, inputs: dict[str, torch.Tensor], group_size: int,
                       vision_start_id: int | None) -> Any | None:
    """Vision-tower outputs for P prompts, expanded to P*G rows; None when the model can't take them.

    The result is passed as ``mm_encoder_outputs={"image": ...}`` to Qwen2/2.5/3-VL forward passes.
    """
    outputs = encode_images(model, inputs)
    if outputs is None:
        return None
    return repeat_encoded(outputs, images_per_prompt(inputs["input_ids"], vision_start_id), group_size)
