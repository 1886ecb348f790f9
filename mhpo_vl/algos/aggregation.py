"""Masked reductions: turn a (B, T) per-token loss into one scalar, and masked token statistics.

Every policy loss reduces through :func:`aggregate`, so the four modes mean the same thing for all
of them. ``B`` is the number of responses, ``T`` the padded response length, and ``|y_i|`` the
number of valid tokens of response ``i``:

- ``token-mean``:              sum_{i,t} l / sum_i |y_i|            (DAPO: every token weighs the same)
- ``seq-mean-token-mean``:     mean_i ( sum_t l / |y_i| )           (GRPO, MHPO: every response the same)
- ``seq-mean-token-sum``:      mean_i ( sum_t l )
- ``seq-mean-token-sum-norm``: mean_i ( sum_t l ) / max_len         (Dr.GRPO; max_len defaults to T)

Rows with no valid token contribute 0 and still count in ``mean_i`` (no NaN). Masked entries of
``values`` are never read arithmetically (``torch.where``), so they may hold inf/NaN.
"""

from __future__ import annotations

from typing import Optional

import torch

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")


def check_agg(mode: str) -> None:
    """Raise ValueError naming ``mode`` when it is not one of :data:`AGG_MODES`."""
    if mode not in AGG_MODES:
        raise ValueError(f"unknown aggregation agg={mode!r}; choose one of {', '.join(AGG_MODES)}")


def aggregate(
    values: torch.Tensor, mask: torch.Tensor, mode: str, *, max_len: Optional[int] = None
) -> torch.Tensor:
    """Reduce per-token ``values`` (B, T) over the boolean ``mask`` (B, T) to a scalar.

    ``max_len`` is the constant divisor of ``seq-mean-token-sum-norm`` (default: T); other modes
    ignore it.
    """
    check_agg(mode)
    mask = as_bool_mask(mask)
    masked = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device))
    if mode == "token-mean":
        return masked.sum() / mask.sum().clamp(min=1)
    token_sum = masked.sum(dim=-1)
    if mode == "seq-mean-token-mean":
        return (token_sum / mask.sum(dim=-1).clamp(min=1)).mean()
    if mode == "seq-mean-token-sum":
        return token_sum.mean()
    norm = values.shape[-1] if max_len is None else max_len
    if norm <= 0:
        raise ValueError(f"max_len must be > 0 for agg='seq-mean-token-sum-norm', got {norm}")
    return token_sum.mean() / norm


def as_bool_mask(mask: torch.Tensor) -> torch.Tensor:
    """A boolean view of a 0/1 (bool, int or float) mask: nonzero means valid."""
    return mask if mask.dtype == torch.bool else mask != 0


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``mask`` (any matching shape); 0 when nothing is valid."""
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    return torch.where(mask, values, zero).sum() / mask.sum().clamp(min=1)


def masked_min_max(values: torch.Tensor, mask: torch.Tensor, empty: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) of ``values`` over ``mask``; both ``empty`` when nothing is valid. No host sync."""
    inf = torch.tensor(float("inf"), dtype=values.dtype, device=values.device)
    any_valid = mask.any()
    fill = torch.tensor(empty, dtype=values.dtype, device=values.device)
    lo = torch.where(mask, values, inf).amin()
    hi = torch.where(mask, values, -inf).amax()
    return torch.where(any_valid, lo, fill), torch.where(any_valid, hi, fill)


def masked_fraction(flags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fraction of valid entries where the boolean ``flags`` hold (float32 scalar; 0 when empty)."""
    return (flags & mask).sum().float() / mask.sum().clamp(min=1).float()
