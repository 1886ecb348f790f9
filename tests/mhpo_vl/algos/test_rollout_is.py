"""Truncated / masked importance weights between trainer and sampler log-probs (constructed inputs)."""

from __future__ import annotations

import math

import pytest
import torch

from mhpo_vl.algos.losses import mhpo_loss
from mhpo_vl.algos.rollout_is import rollout_is_weights

LOG2 = math.log(2.0)


def _inputs():
    # Row 0: trainer above sampler by log 3 on token 0 (rho 3), equal on token 1, one pad.
    # Row 1: trainer below by log 2 on both tokens (rho 0.5 each; sequence rho 0.25), one pad.
    # Row 2: no valid token.
    sampler = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.7, 0.0], [0.0, 0.0, 0.0]])
    trainer = sampler + torch.tensor([[math.log(3.0), 0.0, 99.0], [-LOG2, -LOG2, -99.0], [5.0, 5.0, 5.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    return trainer, sampler, mask


def test_token_tis_truncates_at_cap_and_zeroes_padding():
    trainer, sampler, mask = _inputs()
    weights, m = rollout_is_weights(trainer, sampler, mask, mode="token_tis", cap=2.0)
    expected = torch.tensor([[2.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(weights, expected, atol=1e-6)
    assert m["masked_frac"].item() == 0.0
    assert m["is_weight_max"].item() == pytest.approx(3.0, rel=1e-5)  # the untruncated ratio is reported
    assert m["is_weight_mean"].item() == pytest.approx((3.0 + 1.0 + 0.5 + 0.5) / 4, rel=1e-5)
    assert m["logprob_abs_diff_max"].item() == pytest.approx(math.log(3.0), rel=1e-5)
    assert m["logprob_abs_diff_mean"].item() == pytest.approx((math.log(3.0) + 0 + 2 * LOG2) / 4, rel=1e-5)


def test_seq_mis_masks_whole_responses_outside_the_band():
    trainer, sampler, mask = _inputs()
    weights, m = rollout_is_weights(trainer, sampler, mask, mode="seq_mis", cap=3.5)
    # Row 0: sequence rho 3 <= 3.5 kept; row 1: 0.25 < 1/3.5 masked.
    assert weights.tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    assert m["masked_frac"].item() == pytest.approx(0.5)
    assert m["is_weight_max"].item() == pytest.approx(3.0, rel=1e-5)
    assert m["is_weight_mean"].item() == pytest.approx((3.0 + 0.25) / 2, rel=1e-5)
    weights2, m2 = rollout_is_weights(trainer, sampler, mask, mode="seq_mis", cap=5.0)
    assert weights2[:2, :2].eq(1).all() and m2["masked_frac"].item() == 0.0


def test_none_gives_unit_weights_but_still_measures():
    trainer, sampler, mask = _inputs()
    weights, m = rollout_is_weights(trainer, sampler, mask, mode="none", cap=2.0)
    assert torch.equal(weights, mask.float())
    assert m["logprob_abs_diff_max"].item() > 1.0


def test_identical_logprobs_give_weight_one_and_zero_diff():
    logp = torch.randn(4, 6)
    mask = torch.ones(4, 6)
    for mode in ("token_tis", "seq_mis"):
        weights, m = rollout_is_weights(logp, logp.clone(), mask, mode=mode, cap=2.0)
        assert torch.equal(weights, mask)
        assert m["logprob_abs_diff_max"].item() == 0.0 and m["is_weight_mean"].item() == pytest.approx(1.0)


def test_extreme_mismatch_stays_finite():
    trainer = torch.tensor([[1e4, -1e4]])
    sampler = torch.zeros(1, 2)
    weights, m = rollout_is_weights(trainer, sampler, torch.ones(1, 2), mode="token_tis", cap=3.0)
    assert torch.isfinite(weights).all() and weights.max().item() == 3.0
    assert all(torch.isfinite(v) for v in m.values())


def test_weights_scale_the_loss_per_token():
    """Folding the weights into (N, T) advantages scales each token's loss term by its weight."""
    torch.manual_seed(0)
    logp = torch.randn(2, 3, requires_grad=True)
    old = logp.detach() + 0.1 * torch.randn(2, 3)
    adv = torch.tensor([1.0, -1.0])
    mask = torch.ones(2, 3)
    weights = torch.tensor([[2.0, 1.0, 0.5], [1.0, 1.0, 1.0]])
    loss_w, _ = mhpo_loss(logp, old, adv[:, None] * weights, mask, agg="token-mean")
    manual = 0.0
    for t in range(3):
        one_hot = torch.zeros(2, 3)
        one_hot[:, t] = 1.0
        part, _ = mhpo_loss(logp, old, adv[:, None] * weights * one_hot, mask, agg="token-mean")
        manual = manual + part
    assert torch.allclose(loss_w, manual, atol=1e-6)
    unweighted, _ = mhpo_loss(logp, old, adv, mask, agg="token-mean")
    assert not torch.allclose(loss_w, unweighted)


@pytest.mark.parametrize("kwargs,match", [({"mode": "tis"}, "rollout_is mode"), ({"cap": 1.0}, "cap")])
def test_bad_arguments(kwargs, match):
    trainer, sampler, mask = _inputs()
    with pytest.raises(ValueError, match=match):
        rollout_is_weights(trainer, sampler, mask, **kwargs)
