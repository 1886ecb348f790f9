"""The shipped model-based reward (recipes/rewards/judge.py) on a tiny local causal LM, in a worker process."""

from __future__ import annotations

from pathlib import Path

import pytest

from mhpo_vl.rewards import combine

JUDGE = str(Path(__file__).resolve().parents[2] / "recipes" / "rewards" / "judge.py") + ":judge"


@pytest.fixture(scope="module")
def judge_reward(tiny_model_dir):
    reward = combine({JUDGE: 1.0}, {JUDGE: {"model_dir": str(tiny_model_dir("qwen2"))}}, timeouts={JUDGE: 120})
    reward.warm_up()  # loads the model in the worker before the first call
    yield reward
    reward.close()


def test_judge_scores_a_batch_in_one_call(judge_reward):
    completions = ["<answer>3</answer>", "I do not know", "<answer>4</answer>"]
    records = [{"prompt": "What is 1+2?"}, {"prompt": "What is 2+2?"}, {"prompt": "What is 2+2?"}]
    scores = judge_reward(completions, ["3", "4", "4"], records)
    values = scores.components[JUDGE]
    assert scores.failed == 0 and len(values) == 3
    assert all(0.0 < v < 1.0 for v in values)
    assert len(set(values)) == 3  # the judge reads each completion
    alone = judge_reward(completions[1:2], ["4"], records[1:2]).components[JUDGE]
    assert alone == pytest.approx(values[1:2], abs=1e-4)  # left padding leaves each row's score unchanged


def test_a_slow_judge_is_cut_at_its_timeout(tiny_model_dir):
    reward = combine({JUDGE: 1.0}, {JUDGE: {"model_dir": str(tiny_model_dir("qwen2"))}}, timeouts={JUDGE: 0.001},
                     on_error=0.5)
    reward.warm_up()
    # ~1000 tokens per row through a transformer: many milliseconds on any CPU, far beyond the 1 ms limit
    scores = reward(["x " * 1000] * 2, ["3"] * 2)
    assert scores.components[JUDGE] == [0.5, 0.5] and scores.timeouts_by == {JUDGE: 2}
    reward.close()
