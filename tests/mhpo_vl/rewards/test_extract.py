"""Answer extraction: tags, boxed, the bare rule, wrappers, and linear time on huge inputs."""

import time

import pytest

from mhpo_vl.rewards import answer_text, extract_answer
from mhpo_vl.rewards.extract import last_boxed, unwrap

EXTRACT = [
    ("<think>x</think><answer>42</answer>", "42"),
    ("<answer>\n  7 \n</answer>", "7"),
    ("<answer>1</answer><answer>2</answer>", "2"),
    ("<answer>1</answer> and later <answer>2", "1"),  # the last *complete* block
    ("<answer></answer>", None),
    ("<answer> \n </answer> \\boxed{5}", None),  # tags are authoritative
    (r"so \boxed{5}", "5"),
    (r"\boxed{1} then \boxed{\frac{1}{2}}", r"\frac{1}{2}"),
    (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
    (r"\boxed {3}", "3"),
    (r"\boxed{}", None),
    (r"\boxed{unclosed", None),
    ("plain text", None),
    ("", None),
    (None, None),
]


@pytest.mark.parametrize(("text", "expected"), EXTRACT)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_custom_answer_tag():
    assert extract_answer("<final>3</final>", answer_tag="final") == "3"
    assert extract_answer("<final>3</final>") is None


BARE = [
    ("1/2", "1/2"),
    ("  B  ", "B"),
    ("x" * 100, "x" * 100),
    ("x" * 101, None),  # too long to be a bare answer
    ("<think>hmm</think> 5", None),  # tags but no answer block
    ("<answer>5", None),  # unclosed answer tag
    ("5<br/>", None),
    ("   ", None),
]


@pytest.mark.parametrize(("text", "expected"), BARE)
def test_answer_text_bare_rule(text, expected):
    assert answer_text(text) == expected


def test_unwrap_only_whole_wrappers():
    assert unwrap(r"\boxed{\text{B}}") == "B"
    assert unwrap("$x$ + $y$") == "$x$ + $y$"
    assert unwrap(r"\text{a} + \text{b}") == r"\text{a} + \text{b}"
    assert unwrap("**C**") == "C"


def test_last_boxed_nested_braces():
    assert last_boxed(r"\boxed{\frac{\sqrt{3}}{2}}") == r"\frac{\sqrt{3}}{2}"


@pytest.mark.parametrize(
    "text",
    [
        "a" * 1_000_000,
        "<answer>" * 100_000,
        "\\boxed{" * 100_000,
        "{" * 1_000_000,
        "<answer>" + "{" * 1_000_000 + "</answer>",
    ],
)
def test_huge_inputs_are_fast(text):
    start = time.perf_counter()
    extract_answer(text)
    answer_text(text)
    # A hang guard against catastrophic backtracking (which takes minutes at 1 MB), not a speed check.
    assert time.perf_counter() - start < 10.0
