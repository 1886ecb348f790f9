"""Group-relative advantages (GRPO, Dr.GRPO), RLOO, REINFORCE++-style, and zero-variance counts."""

from __future__ import annotations

import doctest
import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mhpo_vl.algos.advantages as advantages_module
from mhpo_vl.algos import (
    compute_advantages,
    group_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
    zero_variance_groups,
)

REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 1.0])  # P=3, G=4


def test_grpo_by_hand():
    adv = group_advantages(REWARDS, 4)
    s = statistics.stdev([1.0, 0.0, 0.0, 1.0])  # unbiased, 0.57735
    want = [0.5 / (s + 1e-6), -0.5 / (s + 1e-6)] * 2
    assert adv[:4].tolist() == pytest.approx([want[0], want[1], want[1], want[0]], rel=1e-6)
    assert adv[4:8].tolist() == [0.0] * 4  # all-equal group: exactly 0
    s3 = statistics.stdev([0.0, 0.0, 0.0, 1.0])
    assert adv[8:].tolist() == pytest.approx([-0.25 / (s3 + 1e-6)] * 3 + [0.75 / (s3 + 1e-6)], rel=1e-6)


def test_dr_grpo_only_centres():
    adv = group_advantages(REWARDS, 4, std_normalize=False)
    assert adv.tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0, -0.25, -0.25, -0.25, 0.75])


def test_rloo_by_hand():
    adv = rloo_advantages(REWARDS, 4)
    # R_i - mean of the other three
    assert adv[:4].tolist() == pytest.approx([1 - 1 / 3, 0 - 2 / 3, 0 - 2 / 3, 1 - 1 / 3])
    assert adv[8:].tolist() == pytest.approx([-1 / 3, -1 / 3, -1 / 3, 1.0])
    with pytest.raises(ValueError, match="group_size >= 2"):
        rloo_advantages(REWARDS, 1)


def test_reinforce_pp_whitens_the_batch():
    adv = reinforce_pp_advantages(REWARDS, 4)
    assert adv.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert adv.std().item() == pytest.approx(1.0, rel=1e-4)
    assert adv[4:8].tolist() == [0.0] * 4
    plain = reinforce_pp_advantages(REWARDS, 4, group_baseline=False)
    want = (REWARDS - REWARDS.mean()) / (REWARDS.std() + 1e-6)
    torch.testing.assert_close(plain, want)


def test_zero_variance_count_and_stats():
    assert zero_variance_groups(REWARDS, 4).item() == 1
    assert zero_variance_groups(torch.ones(6), 3).item() == 2
    for method in ("grpo", "rloo", "reinforce_pp"):
        adv, stats = compute_advantages(REWARDS, 4, method)
        assert adv.shape == (12,)
        assert stats["zero_variance_groups"].item() == 1
        assert stats["zero_variance_frac"].item() == pytest.approx(1 / 3)
        assert stats["reward_mean"].item() == pytest.approx(REWARDS.mean().item())
    adv, _ = compute_advantages(REWARDS, 4, "grpo", std_normalize=False)
    torch.testing.assert_close(adv, group_advantages(REWARDS, 4, std_normalize=False))
    with pytest.raises(ValueError, match="unknown advantage method 'ppo'"):
        compute_advantages(REWARDS, 4, "ppo")


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="multiple of group_size=5"):
        group_advantages(REWARDS, 5)
    with pytest.raises(ValueError, match="1-D"):
        group_advantages(REWARDS.view(3, 4), 4)
    with pytest.raises(ValueError, match="indices \\[1\\]"):
        group_advantages(torch.tensor([0.0, float("nan")]), 2)
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(REWARDS, 0)


def test_int_rewards_and_lists_are_accepted_as_float32():
    adv = group_advantages([1, 0, 1, 1], 2)
    assert adv.dtype == torch.float32 and adv[2:].tolist() == [0.0, 0.0]


def test_doctest():
    assert doctest.testmod(advantages_module).failed == 0


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 4), st.integers(2, 6), st.data())
def test_group_properties(p, g, data):
    rewards = torch.tensor(data.draw(st.lists(st.sampled_from([0.0, 0.25, 1.0]), min_size=p * g, max_size=p * g)))
    adv = group_advantages(rewards, g).view(p, g)
    assert torch.allclose(adv.sum(-1), torch.zeros(p), atol=1e-4)  # zero-mean per group
    flat = rewards.view(p, g).amax(-1) == rewards.view(p, g).amin(-1)
    assert (adv[flat] == 0).all() and zero_variance_groups(rewards, g).item() == flat.sum().item()
    # order within a group is preserved: a higher reward gets a higher advantage
    r = rewards.view(p, g)
    assert ((r[:, :, None] > r[:, None, :]) <= (adv[:, :, None] > adv[:, None, :])).all()
