"""Format reward (tags, order, emptiness, trailing text) and the DAPO soft overlong penalty."""

import pytest

from mhpo_vl.rewards import format_reward, length_penalty

FORMAT = [
    ("<think>reason</think><answer>4</answer>", 1.0),
    ("  <think>reason</think>\n\n<answer>4</answer>\n", 1.0),
    ("<think>reason</think><answer>4</answer> extra", 0.0),
    ("preamble <think>reason</think><answer>4</answer>", 0.0),
    ("<think>reason</think> text <answer>4</answer>", 0.0),
    ("<think> </think><answer>4</answer>", 0.0),
    ("<think>reason</think><answer> </answer>", 0.0),
    ("<think>reason</think><answer></answer>", 0.0),
    ("<answer>4</answer><think>reason</think>", 0.0),
    ("<think>a</think><think>b</think><answer>4</answer>", 0.0),
    ("<think>a</think><answer>4</answer><answer>5</answer>", 0.0),
    ("<think>a<answer>4</answer></think><answer>4</answer>", 0.0),
    ("<think>reason</think>", 0.0),
    ("<answer>4</answer>", 0.0),
    ("<think>reason<answer>4</answer>", 0.0),
    ("", 0.0),
    ("<think>" * 100_000, 0.0),
]


@pytest.mark.parametrize(("completion", "expected"), FORMAT)
def test_format_table(completion, expected):
    assert format_reward(completion) == expected


def test_format_options_and_kwargs():
    assert format_reward("<r>x</r><a>1</a>", think_tag="r", answer_tag="a") == 1.0
    assert format_reward("<think>x</think><answer>1</answer>", think_tag="r") == 0.0
    assert format_reward("reasoning</think><answer>1</answer>", think_prefilled=True) == 1.0
    assert format_reward("<think>r</think><answer>1</answer>", think_prefilled=True) == 0.0
    assert format_reward("<think>r</think><answer>1</answer>", "ref", answer_type="math") == 1.0


@pytest.mark.parametrize(
    ("length", "expected"),
    [(0, 0.0), (150, 0.0), (160, -0.2), (175, -0.5), (200, -1.0), (201, -1.0), (10_000, -1.0)],
)
def test_length_penalty_ramp(length, expected):
    got = length_penalty("text", None, response_length=length, max_length=200, buffer=50)
    assert got == pytest.approx(expected)


def test_length_penalty_hard_cutoff_and_errors():
    assert length_penalty(response_length=200, max_length=200) == 0.0
    assert length_penalty(response_length=201, max_length=200) == -1.0
    with pytest.raises(ValueError, match="buffer"):
        length_penalty(response_length=1, max_length=10, buffer=11)
    with pytest.raises(ValueError, match="response_length"):
        length_penalty(response_length=-1, max_length=10)
    with pytest.raises(TypeError):
        length_penalty("x", None, max_length=10)
