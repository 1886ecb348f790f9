"""reward.extract modes: each mode on its own, through every verifier, through eval scoring and the config."""

from __future__ import annotations

import pytest

from mhpo_vl.config import load_config
from mhpo_vl.errors import ConfigError
from mhpo_vl.evaluation import score_sample
from mhpo_vl.rewards import (
    accuracy,
    choice_accuracy,
    iou_reward,
    math_accuracy,
    numeric_accuracy,
    text_accuracy,
)
from mhpo_vl.rewards.modes import EXTRACT_MODES, check_mode, extract_final, extraction_failures, last_number

PROSE = "The final answer to the given arithmetic problem is 12."


@pytest.mark.parametrize("text, expected", [
    ("3 + 4 = 7", "7"), ("3 + 4 = 7.", "7"), ("-5", "-5"), ("it is −5", "-5"), ("total: 1,234,567 apples", "1234567"),
    ("2.50 dollars", "2.50"), ("about 3 / 4", "3/4"), ("5-3", "3"), ("x2 is the variable", None),
    ("no digits", None), ("", None), ("+8", "8"), ("between 1 and 20, say 13", "13"),
])
def test_last_number(text, expected) -> None:
    assert last_number(text) == expected


def test_each_mode() -> None:
    text = "<answer>7</answer> or \\boxed{8}, maybe 9"
    assert extract_final(text, "tags") == "7"
    assert extract_final(text, "boxed") == "8"
    assert extract_final(text, "last_number") == "9"
    assert extract_final(text, "full_text") == text
    assert extract_final(PROSE, "tags") == PROSE  # the bare rule: a short reply without tags is the answer
    assert extract_final(PROSE, "boxed") is None
    assert extract_final(PROSE, "last_number") == "12"
    assert extract_final("   ", "full_text") is None
    assert set(EXTRACT_MODES) == {"tags", "boxed", "last_number", "full_text"}
    with pytest.raises(ValueError, match="unknown extraction mode 'json'"):
        check_mode("json")
    with pytest.raises(ValueError):
        extract_final("1", "json")


def test_linear_on_huge_input() -> None:
    huge = "1 " * 500_000 + "x"
    assert last_number(huge) == "1"


def test_every_verifier_takes_the_mode() -> None:
    assert numeric_accuracy(PROSE, "12") == 0.0  # tags mode: the whole short reply is not one number
    assert math_accuracy(PROSE, "12", extract="last_number") == 1.0
    assert numeric_accuracy(PROSE, "12", extract="last_number") == 1.0
    assert numeric_accuracy("so \\boxed{12} then 13", "12", extract="boxed") == 1.0
    assert numeric_accuracy("so \\boxed{12} then 13", "12", extract="last_number") == 0.0
    assert choice_accuracy("  B ", "B", ["x", "y"], extract="full_text") == 1.0
    assert text_accuracy(" Paris is the capital ", "paris is the capital", extract="full_text") == 1.0
    assert iou_reward("[0, 0, 10, 10]", [0, 0, 10, 10], extract="full_text") == 1.0
    assert accuracy(PROSE, "12", answer_type="numeric", extract="last_number") == 1.0
    assert accuracy(PROSE, "12", answer_type="math", extract="last_number") == 1.0


def test_extraction_failure_rate() -> None:
    assert extraction_failures([PROSE, "nothing", "7"], "last_number") == pytest.approx(1 / 3)
    assert extraction_failures(["\\boxed{3", "<answer>3</answer>"], "tags") == 0.5
    assert extraction_failures([], "tags") == 0.0


def test_eval_scoring_uses_the_mode() -> None:
    record = {"id": "a", "answer": "12", "answer_type": "numeric"}
    tags = score_sample(PROSE, record)
    assert tags["extracted"] == PROSE and not tags["correct"]
    last = score_sample(PROSE, record, extract="last_number")
    assert last["extracted"] == "12" and last["correct"]
    with pytest.raises(ValueError, match="unknown extraction mode"):
        score_sample(PROSE, record, extract="nope")


def test_config_key(tmp_path) -> None:
    assert load_config(None).reward.extract == "tags"
    assert load_config(None, ["reward.extract=last_number"]).reward.extract == "last_number"
    with pytest.raises(ConfigError, match="reward.extract"):
        load_config(None, ["reward.extract=last_word"])
