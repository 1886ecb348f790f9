"""Turn the per-call metric tensors of a step into one flat dict of floats, with one host sync."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch


def step_summary(parts: Iterable[Mapping[str, torch.Tensor]], prefix: str = "") -> dict[str, float]:
    """Mean of each metric over ``parts`` (e.g. the metrics of every micro-batch of a step).

    All values are stacked and copied to the host together, so a step pays one sync, not one per
    metric. Keys get ``prefix`` (e.g. ``"loss/"``); a metric missing from some parts is averaged
    over the parts that have it.

    >>> step_summary([{"clip_frac": torch.tensor(0.25)}, {"clip_frac": torch.tensor(0.75)}], "actor/")
    {'actor/clip_frac': 0.5}
    """
    sums: dict[str, list[torch.Tensor]] = {}
    for part in parts:
        for key, value in part.items():
            sums.setdefault(key, []).append(value.detach().float().reshape(()))
    if not sums:
        return {}
    means = torch.stack([torch.stack(values).mean() for values in sums.values()]).cpu().tolist()
    return {f"{prefix}{key}": mean for key, mean in zip(sums, means)}
