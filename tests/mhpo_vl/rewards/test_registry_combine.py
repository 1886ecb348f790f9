"""Registry, accuracy dispatch, user reward files, and the batch scorer."""

import pytest

from mhpo_vl.errors import ConfigError
from mhpo_vl.rewards import REWARDS, BatchScores, accuracy, combine, resolve_reward, text_accuracy


def test_registry_has_every_builtin():
    expected = {
        "accuracy",
        "math_accuracy",
        "choice_accuracy",
        "numeric_accuracy",
        "iou_reward",
        "text_accuracy",
        "format_reward",
        "length_penalty",
    }
    assert expected <= set(REWARDS)


@pytest.mark.parametrize(
    ("completion", "reference", "answer_type", "choices", "expected"),
    [
        ("<answer>1/2</answer>", "0.5", "math", None, 1.0),
        ("<answer>B</answer>", "40", "choice", ["30", "40"], 1.0),
        ("<answer>A</answer>", "40", "choice", ["30", "40"], 0.0),
        ("<answer>1,000</answer>", "1000", "numeric", None, 1.0),
        ("<answer>[0,0,2,2]</answer>", [0, 0, 2, 2], "bbox", None, 1.0),
        ("<answer> New  York </answer>", "new york", "text", None, 1.0),
        ("<answer>Newark</answer>", "new york", "text", None, 0.0),
    ],
)
def test_accuracy_dispatch(completion, reference, answer_type, choices, expected):
    assert accuracy(completion, reference, answer_type=answer_type, choices=choices) == expected


def test_accuracy_passes_options_and_rejects_unknown_types():
    assert accuracy("<answer>101</answer>", "100", answer_type="numeric", rel_tol=0.05) == 1.0
    with pytest.raises(ValueError, match="answer_type 'essay'"):
        accuracy("<answer>x</answer>", "x", answer_type="essay")


def test_text_accuracy_empty_reference():
    assert text_accuracy("<answer>x</answer>", "  ") == 0.0


def test_unknown_reward_suggests_a_name():
    with pytest.raises(ValueError, match="did you mean 'math_accuracy'"):
        resolve_reward("math_acuracy")
    with pytest.raises(ConfigError, match="not found"):
        resolve_reward("missing_file.py:fn")


def _write_user_reward(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(
        "def short_bonus(completion, reference, max_chars=10):\n"
        "    return 1.0 if len(completion) <= max_chars else 0.0\n"
        "def echo_type(completion, reference, **kw):\n"
        "    return 1.0 if kw.get('answer_type') == 'math' else 0.0\n"
    )
    return path


def test_user_function_from_file(tmp_path):
    path = _write_user_reward(tmp_path)
    fn = resolve_reward(f"{path}:short_bonus")
    assert fn("abc", None) == 1.0
    assert resolve_reward("my_rewards.py:echo_type", base_dir=tmp_path)("x", None, answer_type="math") == 1.0
    with pytest.raises(ConfigError, match="did you mean 'short_bonus'"):
        resolve_reward(f"{path}:short_bonu")


def test_user_file_with_future_annotations_and_a_dataclass(tmp_path):
    """A reward file is registered as a module while it runs: dataclasses look their module up in sys.modules."""
    path = tmp_path / "typed_reward.py"
    path.write_text("from __future__ import annotations\nfrom dataclasses import dataclass\n\n"
                    "@dataclass\nclass Limit:\n    chars: int = 3\n\n"
                    "def short(completion: str, reference: str | None, **_) -> float:\n"
                    "    return float(len(completion) <= Limit().chars)\n")
    assert resolve_reward(f"{path}:short")("abc", None) == 1.0


def test_combine_weights_components_and_records(tmp_path):
    path = _write_user_reward(tmp_path)
    reward = combine(
        {"accuracy": 0.9, "format_reward": 0.1, f"{path}:short_bonus": 0.5, "length_penalty": 1.0},
        {f"{path}:short_bonus": {"max_chars": 40}, "length_penalty": {"max_length": 100, "buffer": 20}},
    )
    completions = [
        "<think>t</think><answer>B</answer>",
        "<answer>1/2</answer>",
        "<think>t</think><answer>7</answer>",
    ]
    references = ["B", "0.5", "8"]
    records = [
        {"answer_type": "choice", "choices": ["x", "y"], "response_length": 10, "id": "a"},
        {"answer_type": "math", "response_length": 90},
        {"answer_type": "numeric", "response_length": 101},
    ]
    scores = reward(completions, references, records)
    assert isinstance(scores, BatchScores)
    assert scores.components["accuracy"] == [1.0, 1.0, 0.0]
    assert scores.components["format_reward"] == [1.0, 0.0, 1.0]
    assert scores.components[f"{path}:short_bonus"] == [1.0, 1.0, 1.0]
    assert scores.components["length_penalty"] == pytest.approx([0.0, -0.5, -1.0])
    assert scores.total == pytest.approx([0.9 + 0.1 + 0.5, 0.9 + 0.5 - 0.5, 0.1 + 0.5 - 1.0])
    total, parts = scores
    assert total == scores.total and set(parts) == set(reward.names)
    assert scores.throughput > 0 and scores.timeouts == 0


def test_user_kwargs_function_receives_record_fields(tmp_path):
    path = _write_user_reward(tmp_path)
    reward = combine({f"{path}:echo_type": 1.0})
    assert reward(["x", "y"], ["", ""], [{"answer_type": "math"}, {"answer_type": "text"}]).total == [
        1.0,
        0.0,
    ]


@pytest.mark.parametrize(
    ("components", "options", "match"),
    [
        ({}, None, "non-empty"),
        ({"math_acc": 1.0}, None, "did you mean 'math_accuracy'"),
        ({"math_accuracy": "high"}, None, "weight"),
        ({"numeric_accuracy": 1.0}, {"numeric_accuracy": {"rel_toll": 0.1}}, "did you mean 'rel_tol'"),
        ({"numeric_accuracy": 1.0}, {"numeric_acuracy": {"rel_tol": 0.1}}, "not a component"),
        ({"accuracy": 1.0}, {"accuracy": {"bogus": 1}}, "unknown option 'bogus'"),
    ],
)
def test_combine_config_errors(components, options, match):
    with pytest.raises(ValueError, match=match):
        combine(components, options)


def test_accuracy_accepts_options_of_any_verifier():
    reward = combine({"accuracy": 1.0}, {"accuracy": {"rel_tol": 0.1, "answer_tag": "final"}})
    assert reward(["<final>105</final>"], ["100"], [{"answer_type": "numeric"}]).total == [1.0]


def test_component_errors_score_on_error_and_name_the_component(caplog):
    reward = combine({"length_penalty": 1.0}, on_error=-0.5)  # no max_length anywhere
    with caplog.at_level("WARNING", logger="mhpo_vl.rewards"):
        scores = reward(["x"], [None], [{"response_length": 3, "id": "q1"}])
    assert scores.total == [-0.5] and scores.errors_by == {"length_penalty": 1}
    assert "'length_penalty' failed on record 'q1'" in caplog.text and "max_length" in caplog.text
    with pytest.raises(ValueError, match="2 completions"):
        reward(["x", "y"], [None], None)
