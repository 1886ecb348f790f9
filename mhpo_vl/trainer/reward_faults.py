"""Reward failures per step: counted per component, summed over processes, and the stop rule.

Every rank calls :meth:`RewardFaults.settle` at the same point of each step; the counts are summed
in one all-reduce before anyone decides, so all ranks stop together or none does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mhpo_vl.errors import UserError
from mhpo_vl.rewards import BatchScores

__all__ = ["RewardFaults"]


class RewardFaults:
    """Accumulates :class:`BatchScores` failure counts over one step (several batches with dynamic
    sampling) and turns them into metrics: ``reward/<name>/timeouts`` (samples whose call timed out or
    hit a math-verify time limit), ``reward/<name>/errors`` and ``reward/failed_frac`` (samples that
    scored ``on_error``)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.reset()

    def reset(self) -> None:
        self.timeouts = dict.fromkeys(self.names, 0)
        self.errors = dict.fromkeys(self.names, 0)
        self.failed = 0
        self.samples = 0

    def add(self, scores: BatchScores) -> None:
        for name in self.names:
            self.timeouts[name] += scores.timeouts_by.get(name, 0)
            self.errors[name] += scores.errors_by.get(name, 0)
        self.failed += scores.failed
        self.samples += len(scores.total)

    def settle(self, accelerator: Any, max_frac: float, step: int) -> dict[str, float]:
        """Sum the counts over processes, reset, and return the metrics; raise UserError (on every
        rank alike) when more than ``max_frac`` of the step's samples failed."""
        counts = [self.failed, self.samples, *self.timeouts.values(), *self.errors.values()]
        device = accelerator.device if accelerator is not None else "cpu"
        total = torch.tensor(counts, dtype=torch.float32, device=device)  # (2 + 2 * components,)
        if accelerator is not None and accelerator.num_processes > 1:
            total = accelerator.reduce(total, reduction="sum")
        failed, samples, *rest = (int(round(v)) for v in total.tolist())
        k = len(self.names)
        timeouts, errors = dict(zip(self.names, rest[:k])), dict(zip(self.names, rest[k:]))
        self.reset()
        frac = failed / samples if samples else 0.0
        metrics = {"reward/failed_frac": frac}
        for name in self.names:
            metrics[f"reward/{name}/timeouts"] = float(timeouts[name])
            metrics[f"reward/{name}/errors"] = float(errors[name])
        if frac > max_frac:
            detail = "; ".join(f"{n}: {timeouts[n]} timeouts, {errors[n]} errors"
                               for n in self.names if timeouts[n] or errors[n])
            raise UserError(
                f"step {step}: rewards failed on {failed} of {samples} samples ({frac:.0%}; {detail}), more than "
                f"trainer.max_reward_error_frac={max_frac:g}; stopping. The first error of each record is logged "
                "above: fix the reward function, raise reward.timeouts, or raise trainer.max_reward_error_frac")
        return metrics
