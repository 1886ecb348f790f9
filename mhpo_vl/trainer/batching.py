"""Rollout bookkeeping for the trainer: deterministic prompt order, group selection and concatenation, and the
split of a step's rows into (global) mini-batches."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from mhpo_vl.errors import UserError
from mhpo_vl.rollout.types import Rollout
from mhpo_vl.rollout.vision import image_order, images_per_prompt, patch_rows


class PromptSampler:
    """Endless, seeded, epoch-wise shuffled prompt indices; ``position`` is the resume point.

    Under several processes every rank reads the same global order and keeps its own stride.
    """

    def __init__(self, n_records: int, seed: int, shuffle: bool = True, rank: int = 0, world: int = 1) -> None:
        self.n = n_records
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world = world
        self.position = 0  # global number of prompts consumed

    def _order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.n, generator=gen).tolist()

    def take(self, count: int) -> list[int]:
        """The next ``count`` global prompts; returns this rank's share (every world-th index)."""
        out = []
        for i in range(count):
            pos = self.position + i
            out.append(self._order(pos // self.n)[pos % self.n])
        self.position += count
        return out[self.rank::self.world]


def require_even_split(count: int, world: int, key: str) -> None:
    """A batch of ``count`` prompts (config ``key``) must split evenly over ``world`` processes: every rank
    takes the same, non-empty share (:meth:`PromptSampler.take`), so all ranks make the same forward calls."""
    if count % world:
        raise UserError(f"{key} ({count}) must be a multiple of the number of processes ({world}): every rank "
                        "takes the same share")


def require_mini_batch_split(mini_batch_size: int, world: int) -> None:
    """``algo.mini_batch_size`` is a global row count: each of ``world`` processes takes
    ``mini_batch_size / world`` rows of every mini-batch, so it must split evenly (0 = whole batch)."""
    if mini_batch_size % world:
        raise UserError(f"algo.mini_batch_size ({mini_batch_size}) must be a multiple of the number of processes "
                        f"({world}): it counts rows over all processes, each takes mini_batch_size / {world}")


def mini_batch_count(cfg: Any) -> int:
    """Optimizer steps per PPO epoch: the configured global batch (``rollout.prompts_per_step *
    rollout.group_size`` rows) over the global ``algo.mini_batch_size``; 1 when that is 0 (whole batch).

    The count is fixed by the config, so it is the same on every rank and at every step, also under dynamic
    sampling, where the rows actually kept may be fewer or more than the configured batch.
    """
    mini = cfg.algo.mini_batch_size
    if mini == 0:
        return 1
    return max(1, (cfg.rollout.prompts_per_step * cfg.rollout.group_size) // mini)


def mini_batch_slices(n_rows: int, count: int) -> list[slice]:
    """This rank's ``n_rows`` split into ``count`` contiguous mini-batches of near-equal size (sizes differ
    by at most one row; fewer slices when ``n_rows < count``, never an empty one).

    With the configured batch on every rank (n_rows = global batch / world) each slice holds exactly
    ``algo.mini_batch_size / world`` rows. Rank r holds global prompts r, r + world, ... (see
    :meth:`PromptSampler.take`), so slice k of every rank together are the global prompts of slice k
    of a one-process run whenever ``mini_batch_size`` is a multiple of ``world * group_size``.
    """
    count = max(1, min(count, n_rows))
    return [slice(k * n_rows // count, (k + 1) * n_rows // count) for k in range(count)]


def select_groups(rollout: Rollout, groups: list[int], vision_start_id: int | None) -> Rollout:
    """A rollout holding only the given prompt groups (e.g. those with non-zero reward variance)."""
    g = rollout.group_size
    rows = torch.tensor([p * g + j for p in groups for j in range(g)], dtype=torch.long)
    prompt = rollout.prompt_inputs
    sel = torch.tensor(groups, dtype=torch.long)
    new_prompt = {k: prompt[k][sel] for k in ("input_ids", "attention_mask", "mm_token_type_ids") if k in prompt}
    if "image_grid_thw" in prompt:
        image_index = image_order(images_per_prompt(prompt["input_ids"], vision_start_id), groups)
        grid = prompt["image_grid_thw"]
        new_prompt["image_grid_thw"] = grid[image_index]
        new_prompt["pixel_values"] = prompt["pixel_values"][patch_rows(grid.prod(-1), image_index)]
    return Rollout(
        prompt_inputs=new_prompt, response_ids=rollout.response_ids[rows], response_mask=rollout.response_mask[rows],
        texts=[rollout.texts[i] for i in rows.tolist()], group_size=g, truncated=rollout.truncated[rows],
        logprobs=None if rollout.logprobs is None else rollout.logprobs[rows],
        records=[rollout.records[p] for p in groups],
    )


def _left_pad(t: torch.Tensor, width: int, value: int) -> torch.Tensor:
    return F.pad(t, (width - t.shape[1], 0), value=value)


def _right_pad(t: torch.Tensor, width: int, value: float) -> torch.Tensor:
    return F.pad(t, (0, width - t.shape[1]), value=value)


def concat_rollouts(rollouts: list[Rollout], pad_id: int) -> Rollout:
    """Join rollouts of the same group size (prompts left-padded, responses right-padded to common widths)."""
    if len(rollouts) == 1:
        return rollouts[0]
    lp = max(r.prompt_inputs["input_ids"].shape[1] for r in rollouts)
    t = max(r.response_ids.shape[1] for r in rollouts)
    prompt: dict[str, torch.Tensor] = {}
    pads = {"input_ids": pad_id, "attention_mask": 0, "mm_token_type_ids": 0}
    for key, value in pads.items():
        if key in rollouts[0].prompt_inputs:
            prompt[key] = torch.cat([_left_pad(r.prompt_inputs[key], lp, value) for r in rollouts])
    for key in ("pixel_values", "image_grid_thw"):
        parts = [r.prompt_inputs[key] for r in rollouts if key in r.prompt_inputs]
        if parts:
            prompt[key] = torch.cat(parts)
    logprobs = None
    if all(r.logprobs is not None for r in rollouts):
        logprobs = torch.cat([_right_pad(r.logprobs, t, 0.0) for r in rollouts])
    return Rollout(
        prompt_inputs=prompt,
        response_ids=torch.cat([_right_pad(r.response_ids, t, pad_id) for r in rollouts]),
        response_mask=torch.cat([_right_pad(r.response_mask, t, 0) for r in rollouts]),
        texts=[x for r in rollouts for x in r.texts], group_size=rollouts[0].group_size,
        truncated=torch.cat([r.truncated for r in rollouts]), logprobs=logprobs,
        records=[x for r in rollouts for x in r.records],
    )
