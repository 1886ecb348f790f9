"""The four aggregation modes on hand-computed values, and the masked statistics."""

from __future__ import annotations

import pytest
import torch

from mhpo_vl.algos.aggregation import AGG_MODES, aggregate, masked_fraction, masked_mean, masked_min_max

VALUES = torch.tensor([[1.0, 2.0, 3.0, float("nan")], [4.0, float("inf"), 0.0, 0.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])  # int mask: nonzero = valid


@pytest.mark.parametrize(
    "mode,want",
    [
        ("token-mean", (1 + 2 + 3 + 4) / 4),
        ("seq-mean-token-mean", (6 / 3 + 4 / 1) / 2),
        ("seq-mean-token-sum", (6 + 4) / 2),
        ("seq-mean-token-sum-norm", (6 + 4) / 2 / 4),
    ],
)
def test_modes_by_hand_ignore_masked_garbage(mode, want):
    assert aggregate(VALUES, MASK, mode).item() == pytest.approx(want)


def test_sum_norm_uses_max_len_and_rejects_nonpositive():
    assert aggregate(VALUES, MASK, "seq-mean-token-sum-norm", max_len=10).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="max_len"):
        aggregate(VALUES, MASK, "seq-mean-token-sum-norm", max_len=0)


def test_unknown_mode_names_it():
    with pytest.raises(ValueError, match="'sum'.*token-mean"):
        aggregate(VALUES, MASK, "sum")


@pytest.mark.parametrize("mode", AGG_MODES)
def test_all_masked_gives_zero(mode):
    out = aggregate(VALUES, torch.zeros(2, 4), mode)
    assert out.item() == 0.0


def test_masked_statistics():
    mask = MASK.bool()
    assert masked_mean(VALUES, mask).item() == pytest.approx(2.5)
    lo, hi = masked_min_max(VALUES, mask)
    assert (lo.item(), hi.item()) == (1.0, 4.0)
    lo, hi = masked_min_max(VALUES, torch.zeros_like(mask))
    assert (lo.item(), hi.item()) == (1.0, 1.0)
    assert masked_fraction(VALUES > 2.5, mask).item() == pytest.approx(0.5)
