"""Outcome advantages from grouped rewards: GRPO (and Dr.GRPO), RLOO, REINFORCE++-style.

``rewards`` is (N,) with N = P * G, the G responses of each prompt contiguous:
``[p0g0, ..., p0g{G-1}, p1g0, ...]``. Every function returns advantages (N,) (float32, or float64 for
float64 rewards). A group whose rewards are all equal carries no learning signal: its advantages
are exactly 0 for the group-relative methods, and :func:`zero_variance_groups` /
:func:`compute_advantages` report how many such groups a batch had.

>>> group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0]), 3, std_normalize=False)
tensor([ 0.6667, -0.3333, -0.3333,  0.0000,  0.0000,  0.0000])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Union

import torch

from mhpo_vl.algos.common import compute_dtype

Rewards = Union[torch.Tensor, list[float]]


def _grouped(rewards: Rewards, group_size: int) -> torch.Tensor:
    """Validated rewards as a (P, G) floating tensor."""
    r = torch.as_tensor(rewards)
    if r.dim() != 1:
        raise ValueError(f"rewards must be 1-D (N,), got shape {tuple(r.shape)}")
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be an int >= 1, got {group_size!r}")
    if r.numel() % group_size != 0:
        raise ValueError(f"len(rewards)={r.numel()} is not a multiple of group_size={group_size}")
    r = r.to(compute_dtype(r.dtype) if r.is_floating_point() else torch.float32)
    if not bool(torch.isfinite(r).all()):
        bad = torch.nonzero(~torch.isfinite(r)).flatten()[:5].tolist()
        raise ValueError(f"rewards must be finite; NaN/inf at indices {bad}")
    return r.view(-1, group_size)


def _flat(groups: torch.Tensor) -> torch.Tensor:
    """(P, 1) bool: groups whose rewards are all equal."""
    return (groups.amax(dim=-1, keepdim=True) == groups.amin(dim=-1, keepdim=True))


def _std(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Unbiased standard deviation (as torch.std, TRL and verl), 0 for a single element."""
    n = x.numel() if dim is None else x.shape[dim]
    correction = 1 if n > 1 else 0
    if dim is None:
        return x.std(correction=correction)
    return x.std(dim=dim, keepdim=True, correction=correction)


def zero_variance_groups(rewards: Rewards, group_size: int) -> torch.Tensor:
    """Number of groups whose rewards are all equal (int64 scalar tensor)."""
    return _flat(_grouped(rewards, group_size)).sum()


def group_advantages(rewards: Rewards, group_size: int, *, std_normalize: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """GRPO: A_i = (R_i - mean_group) / (std_group + eps); Dr.GRPO with ``std_normalize=False``.

    std is the unbiased group standard deviation. All-equal groups give exactly 0.
    """
    groups = _grouped(rewards, group_size)
    adv = groups - groups.mean(dim=-1, keepdim=True)
    if std_normalize:
        adv = adv / (_std(groups, dim=-1) + eps)
    return torch.where(_flat(groups), torch.zeros_like(adv), adv).reshape(-1)


def rloo_advantages(rewards: Rewards, group_size: int) -> torch.Tensor:
    """RLOO: A_i = R_i - mean of the other G-1 rewards of its group (needs G >= 2)."""
    if group_size < 2:
        raise ValueError(f"rloo advantages need group_size >= 2, got {group_size}")
    groups = _grouped(rewards, group_size)
    adv = (groups - groups.mean(dim=-1, keepdim=True)) * (group_size / (group_size - 1))
    return torch.where(_flat(groups), torch.zeros_like(adv), adv).reshape(-1)


def reinforce_pp_advantages(
    rewards: Rewards, group_size: int, *, group_baseline: bool = True, eps: float = 1e-6
) -> torch.Tensor:
    """REINFORCE++-style: (optionally) subtract the group mean, then whiten over the whole batch.

    A = (x - mean_batch(x)) / (std_batch(x) + eps), x = R - mean_group (``group_baseline=True``,
    REINFORCE++-baseline; all-equal groups stay 0) or x = R (plain REINFORCE++).
    """
    groups = _grouped(rewards, group_size)
    x = groups - groups.mean(dim=-1, keepdim=True) if group_baseline else groups
    adv = (x - x.mean()) / (_std(x) + eps)
    if group_baseline:
        adv = torch.where(_flat(groups), torch.zeros_like(adv), adv)
    return adv.reshape(-1)


ADVANTAGES: dict[str, Callable[..., torch.Tensor]] = {
    "grpo": group_advantages,
    "rloo": rloo_advantages,
    "reinforce_pp": reinforce_pp_advantages,
}


def compute_advantages(
    rewards: Rewards, group_size: int, method: str = "grpo", *, std_normalize: bool = True, eps: float = 1e-6
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Advantages (N,) by ``method`` (a key of :data:`ADVANTAGES`) and a stats dict of scalar tensors.

    ``std_normalize`` applies to ``grpo`` only (rloo never divides; reinforce_pp always whitens).
    Stats: zero_variance_groups (count), zero_variance_frac, reward_mean, reward_std, advantage_abs_mean.
    """
    if method == "grpo":
        adv = group_advantages(rewards, group_size, std_normalize=std_normalize, eps=eps)
    elif method == "rloo":
        adv = rloo_advantages(rewards, group_size)
    elif method == "reinforce_pp":
        adv = reinforce_pp_advantages(rewards, group_size, eps=eps)
    else:
        raise ValueError(f"unknown advantage method {method!r}; choose one of {', '.join(ADVANTAGES)}")
    groups = _grouped(rewards, group_size)
    flat = _flat(groups)
    stats = {
        "zero_variance_groups": flat.sum().to(groups.dtype),
        "zero_variance_frac": flat.to(groups.dtype).mean(),
        "reward_mean": groups.mean(),
        "reward_std": _std(groups),
        "advantage_abs_mean": adv.abs().mean(),
    }
    return adv, stats
