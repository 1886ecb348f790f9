"""Numeric answers: separators, signs, scientific notation, percent, tolerance."""

import pytest

from mhpo_vl.rewards import numeric_accuracy
from mhpo_vl.rewards.numeric import parse_number

EQUAL = [
    ("1,234", "1234"),
    ("1234", "1,234"),
    ("1,234,567.5", "1234567.5"),
    ("1{,}000", "1000"),
    ("-1,680", "-1680"),
    ("+3", "3"),
    ("-0.5", "-.5"),
    ("\u22125", "-5"),  # unicode minus
    ("1e3", "1000"),
    ("1.2E-3", "0.0012"),
    (r"1.2 \times 10^3", "1200"),
    (r"1.2\times10^{3}", "1.2e3"),
    ("45%", "45%"),
    (r"45\%", "45%"),
    ("45", "45%"),
    ("0.45", "45%"),
    ("45%", "45"),
    ("3/4", "0.75"),
    (r"\frac{3}{4}", "0.75"),
    ("5 cm", "5"),
    ("30°", "30"),
    (r"30^\circ", "30"),
    ("x = 5", "5"),
    ("$5", "5"),
    (r"\$5", "5"),
    ("5.", "5"),
    ("3.14159", "3.1416"),  # within rel_tol 1e-4
    ("0", "0"),
]
UNEQUAL = [
    ("3.14", "3.1416"),
    ("45%", "0.45"),  # percent conversion only when the reference is a percentage
    ("-3", "3"),
    ("3 or 4", "3"),
    ("3, 4", "3"),
    ("the answer is 3", "3"),
    ("1,23", "123"),  # not a thousands grouping
    # a comma is a thousands separator only in the strict form d{1,3}(,ddd)+: decimal commas, lists,
    # tuples and intervals are no single number
    ("1,5", "15"),
    ("1,5", "1.5"),
    ("1,2,3", "123"),
    ("1,2345", "12345"),
    ("(1,680)", "1680"),
    ("[1,680)", "1680"),
    ("1e999", "1"),
    ("nan", "1"),
    ("inf", "1"),
    ("1/0", "1"),
    ("", "1"),
    ("\uff13", "3"),  # fullwidth digit
    ("1" * 300, "1"),
]


@pytest.mark.parametrize(("answer", "reference"), EQUAL)
def test_equal(answer, reference):
    assert numeric_accuracy(f"<answer>{answer}</answer>", reference) == 1.0


@pytest.mark.parametrize(("answer", "reference"), UNEQUAL)
def test_unequal(answer, reference):
    assert numeric_accuracy(f"<answer>{answer}</answer>", reference) == 0.0


def test_rel_tol_and_numeric_references():
    assert numeric_accuracy("<answer>101</answer>", 100, rel_tol=0.02) == 1.0
    assert numeric_accuracy("<answer>101</answer>", 100) == 0.0
    assert numeric_accuracy("<answer>0.5</answer>", 0.5) == 1.0
    assert numeric_accuracy("<answer>1</answer>", True) == 0.0
    with pytest.raises(ValueError, match="rel_tol"):
        numeric_accuracy("<answer>1</answer>", "1", rel_tol=-1)


def test_bare_answer_and_record_kwargs():
    assert numeric_accuracy("1,000", "1000", answer_type="numeric", choices=None) == 1.0


def test_parse_number_percent_flag():
    assert parse_number("12.5%").percent and parse_number("12.5%").value == 12.5
    assert parse_number("12.5") == (12.5, False)
