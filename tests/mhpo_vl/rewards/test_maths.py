"""math_accuracy: tables of equal and unequal pairs, LaTeX geometry answers, never looser than math-verify."""

import pytest

from mhpo_vl.rewards import math_accuracy
from mhpo_vl.rewards.guards import refusal_reason

EQUAL = [
    ("1/2", "0.5"),
    (r"\frac{1}{2}", "0.5"),
    (r"\dfrac{1}{2}", r"\frac12"),
    ("0.333333", "1/3"),
    (r"30^\circ", "30"),
    (r"30^{\circ}", "30"),
    ("30°", "30"),
    ("30", r"30^\circ"),
    ("5 cm", "5"),
    (r"5\text{ cm}", "5"),
    (r"12 \mathrm{cm}^2", "12"),
    (r"\frac{\sqrt{3}}{2}", r"\frac{\sqrt 3}{2}"),
    (r"\sqrt{3}/2", r"\frac{\sqrt{3}}{2}"),
    (r"2\sqrt{221}", r"2 \sqrt { 221 }"),  # Geo3K reference spacing
    ("x=3", "3"),
    ("3", "x = 3"),
    ("[1,2)", "[1, 2)"),
    (r"(-\infty, 3]", r"(-\infty,3]"),
    (r"\{1,2\}", r"\{2,1\}"),
    ("(1, 2)", "(1,2)"),
    (r"(3, \pi/2)", r"\left( 3, \frac{\pi}{2} \right)"),
    ("1,000", "1000"),
    ("1,680.5", "1680.5"),
    ("1680", "1,680"),
    ("x^2+1", "1+x^2"),
    (r"2\pi", "6.283185"),
    (r"\pi/3", r"\frac{\pi}{3}"),
    ("10!", "3628800"),
    ("2^{10}", "1024"),
    ("-7", "-7"),
]
UNEQUAL = [
    ("0.333", "1/3"),  # math-verify is not that loose, nor are we
    ("1/2", "0.51"),
    ("3.14", r"\pi"),
    ("(1,2)", "(2,1)"),
    ("-3", "3"),
    ("3 or 5", "5"),  # listing candidates names a set, not the answer
    ("3, 5", "5"),
    ("x=3 or x=5", "x=5"),
    (r"\sqrt{2}", "1.414"),
    ("4", "5"),
    ("yes", "no"),
    ("", "5"),
    # commas other than strict thousands groups d{1,3}(,ddd)+: decimal commas, lists, tuples, intervals
    ("1,5", "15"),
    ("1,5", "1.5"),
    ("1,2,3", "123"),
    ("12,34", "1234"),
    ("(1,680)", "1680"),
    ("[1,680)", "1680"),
]


@pytest.mark.parametrize(("answer", "reference"), EQUAL)
def test_equal(answer, reference):
    assert math_accuracy(f"<think>work</think><answer>{answer}</answer>", reference) == 1.0
    assert math_accuracy(rf"work... so \boxed{{{answer}}}", reference) == 1.0


@pytest.mark.parametrize(("answer", "reference"), UNEQUAL)
def test_unequal(answer, reference):
    assert math_accuracy(f"<answer>{answer}</answer>", reference) == 0.0


def test_bare_answers_and_non_string_references():
    assert math_accuracy("1/2", "0.5") == 1.0
    assert math_accuracy("42", 42) == 1.0
    assert math_accuracy("0.5", 0.5) == 1.0
    assert math_accuracy("5", None) == 0.0
    assert math_accuracy("1", True) == 0.0


def test_missing_or_malformed_answers_score_zero():
    assert math_accuracy("<think>the answer is 5</think>", "5") == 0.0
    assert math_accuracy("<answer></answer>", "5") == 0.0
    assert math_accuracy("<answer>5", "5") == 0.0
    assert math_accuracy("the answer is 5. " * 20, "5") == 0.0  # long prose is not a bare answer


def test_record_fields_are_ignored():
    assert math_accuracy("<answer>2</answer>", "2", answer_type="math", choices=None, id="q1") == 1.0


@pytest.mark.parametrize(
    "answer",
    [
        "9**9**9**9",
        "9^{9^{9^{9}}}",
        "10^{10^{10}}",
        "99999999999^99999999999",
        "(10!)!",
        "100000!",
        "5!!!!",
        r"\binom{1000000000}{500000000}",
        r"\Gamma(10^{10})",
        r"\sum_{k=1}^{9999} k^k",
        "1" * 100,
        "{" * 10 + "1" + "}" * 10,
        "((((1))))",
        "x" * 2000,
    ],
)
def test_guards_refuse_blowups(answer):
    assert refusal_reason(answer) is not None
    assert math_accuracy(f"<answer>{answer}</answer>", "1") == 0.0


@pytest.mark.parametrize(
    "answer", [r"\frac{\sqrt{3}}{2}", "2^{10}", "10!", "x != 3", r"\left(\frac{1}{2}\right)^{2}", "e^{x^2}"]
)
def test_guards_pass_real_answers(answer):
    assert refusal_reason(answer) is None
