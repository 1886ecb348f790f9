"""Multiple choice: letter forms, option text, ambiguity and look-alikes."""

import pytest

from mhpo_vl.rewards import choice_accuracy
from mhpo_vl.rewards.choice import named_options, option_letter

OPTS = ["30", "40", "145°", "none of these"]

CASES = [
    # (answer, reference, choices, expected)
    ("B", "B", None, 1.0),
    ("(B)", "B", None, 1.0),
    ("B.", "B", None, 1.0),
    ("b", "B", None, 1.0),
    ("(b)", "b", None, 1.0),
    ("[B]", "B", None, 1.0),
    (r"\boxed{B}", "B", None, 1.0),
    (r"\text{(B)}", "(B)", None, 1.0),
    ("**B**", "B", None, 1.0),
    ("The answer is B", "B", None, 1.0),
    ("I think B", "B", None, 1.0),
    ("B. 40", "B", OPTS, 1.0),
    ("(B) 40", "B", OPTS, 1.0),
    ("40", "B", OPTS, 1.0),
    ("B", "40", OPTS, 1.0),
    ("145°", "145°", OPTS, 1.0),
    ("C", "145°", OPTS, 1.0),
    ("None of these.", "D", OPTS, 1.0),
    ("C", "B", None, 0.0),
    ("A or B", "B", None, 0.0),
    ("A, B", "B", None, 0.0),
    ("A/B", "B", None, 0.0),
    ("B and C", "B", None, 0.0),
    ("AB", "B", None, 0.0),
    ("ABCD", "A", None, 0.0),
    ("B. 30", "B", OPTS, 0.0),  # letter B, text of option A: two options named
    ("30", "B", OPTS, 0.0),
    ("\u0412", "B", None, 0.0),  # Cyrillic capital VE looks like B
    ("\uff22", "B", None, 0.0),  # fullwidth B
    ("b is wrong, it is a trick", "B", None, 0.0),  # lowercase letters in prose are words
    ("", "B", None, 0.0),
    ("<answer></answer>", "B", None, 0.0),
]


@pytest.mark.parametrize(("answer", "reference", "choices", "expected"), CASES)
def test_choice_table(answer, reference, choices, expected):
    completion = answer if answer.startswith("<") else f"<think>t</think><answer>{answer}</answer>"
    assert choice_accuracy(completion, reference, choices) == expected


def test_bare_completion_and_record_kwargs():
    assert choice_accuracy("B", "B", answer_type="choice", id="x") == 1.0


def test_mapping_choices_and_labelled_options():
    assert choice_accuracy("<answer>red</answer>", "B", {"A": "blue", "B": "red"}) == 1.0
    assert choice_accuracy("<answer>red</answer>", "B", ["A. blue", "B. red"]) == 1.0


def test_text_reference_without_choices_is_a_text_match():
    assert choice_accuracy("<answer>Blue sky</answer>", "blue  sky") == 1.0
    assert choice_accuracy("<answer>red</answer>", "blue sky") == 0.0


def test_helpers():
    assert named_options("A or C") == {"A", "C"}
    assert option_letter("(c)") == "C"
    assert option_letter("zzz", OPTS) is None
