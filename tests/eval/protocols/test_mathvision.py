"""MATH-V: verdicts row by row as mathllm/MATH-V's evaluation/evaluate.py + utils.py define them."""

from __future__ import annotations

import json
import time

import pytest

from eval.__main__ import main
from eval.protocols.latex_value import latex_number, ungroup_thousands
from eval.protocols.mathvision import MathVisionRules, extract, find_math_answer, is_equal
from tests.eval.fixtures import write_jsonl, write_mathvision

# (id, response, official verdict, why). Golds: 1 "C" (options A-E); 17 "12"; 21 "B" = "$2 \pi$";
# 33 "3.14"; 40 "\frac{1}{2}"; 52 "(3,4)"; 60 "7"; 77 "E" (options A-E).
ROWS = [
    ("1", "\\boxed{C}", True, "lowercased letters compare equal"),
    ("1", "Looking at the pattern, the shape is (C).", True, "a trailing ' (C).' is the letter"),
    ("1", "\\boxed{B}", False, "other letter"),
    ("17", "The answer is 12.", True, "number after the last 'is '"),
    ("17", "\\boxed{12 dots}", False, "'12dots' is neither equal nor a number"),
    ("21", "\\boxed{2\\pi}", True, "equals the option text $2 \\pi$ as numbers (6.28)"),
    ("21", "\\boxed{6.283}", True, "6.283 rounds to 6.28 like 2 pi"),
    ("33", "\\boxed{3.14159}", True, "equal to 2 decimals"),
    ("33", "\\boxed{3.2}", False, "3.2 != 3.14"),
    ("40", "\\boxed{0.5}", True, "'0.5' is rewritten to \\frac{1}{2}"),
    ("40", "so x = \\boxed{1/2}", True, "'1/2' is rewritten to \\frac{1}{2}"),
    ("52", "\\boxed{(3, 4)}", True, "spaces removed"),
    ("52", "\\boxed{(4, 3)}", False, "other tuple"),
    ("60", "\\boxed{7.01}", False, "7.01 != 7 to 2 decimals"),
    ("60", "\\boxed{7.004}", True, "7.004 rounds to 7.0"),
    ("60", "AB = \\boxed{7 \\text{ cm}}", False, "spaces and '\\text' are dropped, leaving '7{cm}': not a number"),
    ("60", "AB = \\boxed{7 km}", True, "'km' is one of the units find_math_answer removes"),
    ("77", "<think>odd</think><answer>E</answer>", True, "our <answer> block is read as the response"),
]


@pytest.mark.parametrize("response, answer", [
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),
    ("The final answer is 5. Indeed.", "5"),
    ("B\nbecause ...", "b"),
    ("so \\boxed{1} and then \\boxed{2}", "2"),
    ("\\boxed{90^\\circ}", "90"),
    ("\\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}"),
])
def test_official_extraction(response, answer):
    assert extract(response) == answer


def test_is_equal_and_latex_values():
    assert is_equal("2\\pi", "$2 \\pi$") and is_equal("c", "C") and not is_equal("", "")
    # eval_tuple rounds each element and compares the texts: 1.004 -> "1.0" matches "1.0" but not "1"
    assert is_equal("(1.004,2)", "(1.0,2)") and not is_equal("(1.001,2)", "(1,2)") and not is_equal("(1,2)", "(2,1)")
    assert not is_equal("x+1", "x + 2") and is_equal("x+1", "X+1")
    assert latex_number("\\sqrt[3]{8}") == pytest.approx(2.0) and latex_number("2^{10}") == 1024
    assert latex_number("10^{10^{10}}") is None and latex_number("1/0") is None and latex_number("a" * 500) is None
    assert find_math_answer("$\\left(1,2\\right)$") == "(1,2)"


def test_score_mathvision_row_by_row(tmp_path):
    write_mathvision(tmp_path / "data")
    responses = write_jsonl(tmp_path / "r.jsonl", [{"id": pid, "response": text} for pid, text, _, _ in ROWS])
    assert main(["score", "--benchmark", "mathvision", "--data", str(tmp_path / "data"), "--responses",
                 str(responses), "--output", str(tmp_path / "out")]) == 0
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    by_response = {(s["id"], s["response"]): s for s in samples}
    for pid, text, verdict, why in ROWS:
        assert by_response[(pid, text)]["correct"] is verdict, (pid, text, why)
    m = json.loads((tmp_path / "out" / "results.json").read_text())["benchmarks"]["mathvision"]
    assert m["accuracy"] == pytest.approx(sum(v for *_, v, _ in ROWS) / len(ROWS))
    assert by_response[("1", "Looking at the pattern, the shape is (C).")]["extracted_official"] == "c"
    assert m["protocol"]["name"] == "mathvision" and "utils.py" in m["protocol"]["source"]


# Thousands separators, checked against the official utils.py (latex2sympy2 1.9.1) on these inputs:
# latex2sympy reads "1,680" as 1680; a decimal comma or a list is no number. Ours reads a comma as a
# thousands separator only in the strict whole-answer form d{1,3}(,ddd)+ (see the module docstring).
GROUPED_EQUAL = [
    ("1680", "\\boxed{1,680}"),
    ("1680", "The answer is 1,680."),
    ("1680", "<answer>1,680</answer>"),
    ("-1680", "\\boxed{-1,680}"),
    ("1680", "\\boxed{+1,680}"),
    ("1680.5", "\\boxed{1,680.5}"),
    ("1680", "\\boxed{1,680.004}"),  # equal to 2 decimals
    ("1234567", "\\boxed{1,234,567}"),
    ("1680", "\\boxed{1, 680}"),  # find_math_answer removes spaces first
    ("1680", "\\boxed{\\$1,680}"),
    ("1680", "AB = \\boxed{1,680 km}"),
    ("1,680", "\\boxed{1680}"),  # a grouped gold reads the same way
]
GROUPED_UNEQUAL = [
    ("15", "\\boxed{1,5}"),  # decimal comma or a list: no number
    ("1.5", "\\boxed{1,5}"),
    ("123", "\\boxed{1,2,3}"),  # a list
    ("1234", "\\boxed{12,34}"),
    ("12345", "\\boxed{1,2345}"),
    ("1680", "\\boxed{1,68}"),
    ("1680", "\\boxed{,680}"),
    ("1000", "\\boxed{1,000,}"),
    ("1680", "\\boxed{1{,}680}"),  # latex2sympy rejects the braced comma too
    ("1680", "\\boxed{1,680cm}"),  # unit not among those find_math_answer removes
    ("1680", "\\boxed{(1,680)}"),  # a tuple stays a tuple (official: latex2sympy reads 1680; we differ)
    ("1680", "\\boxed{[1,680]}"),  # a list stays a list (same difference)
    ("(1,680)", "\\boxed{1680}"),  # (same difference)
    ("1680", "\\boxed{[1,680)}"),  # an interval
]


def _free_form(gold: str) -> dict:
    return {"id": "t", "answer": gold, "meta": {"protocol": {"answer": gold, "options": []}}}


@pytest.mark.parametrize("gold, response", GROUPED_EQUAL)
def test_thousands_separators_read_as_numbers(gold, response):
    verdict = MathVisionRules().verdict(_free_form(gold), response, None, False)
    assert verdict.correct, verdict


@pytest.mark.parametrize("gold, response", GROUPED_UNEQUAL)
def test_other_commas_are_no_thousands_separators(gold, response):
    verdict = MathVisionRules().verdict(_free_form(gold), response, None, False)
    assert not verdict.correct, verdict


def test_tuples_and_lists_with_commas_compare_as_before():
    assert is_equal("(1,2)", "(1, 2)") and is_equal("(1,234)", "(1,234)") and is_equal("1,2,3", "1,2,3")
    assert not is_equal("(1,234)", "(1234)") and not is_equal("(1,2)", "12")
    assert ungroup_thousands("(1,2)") == "(1,2)" and ungroup_thousands(" 1,680 ") == "1680"
    assert latex_number("1,680") == 1680 and latex_number("-1,234.5") == pytest.approx(-1234.5)
    assert latex_number("1,5") is None and latex_number("1,2,3") is None and latex_number("(1,680)") is None


def test_grouped_number_checks_stay_fast_on_adversarial_input():
    nearly = "1" + ",111" * 30_000 + ",11"  # almost the grouped form: fails only at the very end
    start = time.perf_counter()
    assert ungroup_thousands(nearly) == nearly and ungroup_thousands(nearly + "1") == nearly.replace(",", "") + "1"
    assert latex_number(nearly) is None and not is_equal("1111", nearly)
    assert not is_equal("1", find_math_answer("\\boxed{" + "1," * 50_000 + "}"))
    assert time.perf_counter() - start < 1.0
