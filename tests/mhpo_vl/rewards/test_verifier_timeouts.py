"""A math-verify comparison past its time limit counts in ``reward/<component>/timeouts``, once per sample.

The slow expression is real: math-verify cannot evaluate this sum within 0.3 s. It sits in the
reference, which the answer guards do not refuse, so the comparison does reach a verifier worker.
"""

from __future__ import annotations

import pytest

from mhpo_vl.rewards import combine
from mhpo_vl.trainer.reward_faults import RewardFaults

HARD = r"\sum_{k=1}^{9999} k^k"
TINY_S = 0.3

USER_CODE = f'''
from mhpo_vl.rewards.maths import math_equal

HARD = {HARD!r}

def two_slow_comparisons(completion, reference):
    return float(math_equal("1", HARD, timeout={TINY_S}) or math_equal("2", HARD, timeout={TINY_S}))

def slower_than_its_limit(completion, reference):
    return float(math_equal("1", HARD, timeout=2.0))
'''


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_accuracy_verifier_timeout_counts_for_the_accuracy_component(isolation):
    reward = combine({"accuracy": 1.0, "format_reward": 0.1}, options={"accuracy": {"timeout": TINY_S}},
                     isolation={"accuracy": isolation})
    try:
        scores = reward(["<answer>1</answer>", "<answer>2</answer>"], [HARD, "2"], [{"answer_type": "math"}] * 2)
    finally:
        reward.close()
    assert scores.components["accuracy"] == [0.0, 1.0]  # the timed-out comparison scores 0, as before
    assert scores.timeouts_by == {"accuracy": 1, "format_reward": 0}
    assert scores.errors_by == {"accuracy": 0, "format_reward": 0} and scores.failed == 0  # not a failure
    faults = RewardFaults(reward.names)
    faults.add(scores)
    metrics = faults.settle(None, 0.5, step=1)  # what the trainer logs for the step
    assert metrics["reward/accuracy/timeouts"] == 1.0 and metrics["reward/format_reward/timeouts"] == 0.0
    assert metrics["reward/failed_frac"] == 0.0


def test_a_sample_counts_once(tmp_path):
    user = tmp_path / "slow.py"
    user.write_text(USER_CODE)
    twice, limited = f"{user}:two_slow_comparisons", f"{user}:slower_than_its_limit"
    # two timed-out comparisons in one call: one sample; a call cut off at its own limit while its
    # comparison runs: one timeout (the call's)
    reward = combine({twice: 1.0, limited: 1.0}, isolation="thread", timeouts={limited: TINY_S})
    try:
        scores = reward(["a"], [""])
    finally:
        reward.close()
    assert scores.components[twice] == [0.0]
    assert scores.timeouts_by == {twice: 1, limited: 1}
    assert scores.errors_by == {twice: 0, limited: 0} and scores.failed == 1  # only the cut-off call failed
