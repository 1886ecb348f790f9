"""MathVerse: rules in place of the two GPT steps; verdicts per row and accuracy per problem_version."""

from __future__ import annotations

import json

import pytest

from eval.__main__ import main
from eval.protocols.mathverse import parse_options
from tests.eval.fixtures import write_jsonl, write_mathverse

# (sample_index, version, response, verdict). Problem 1: gold D = 70° (options in the question, none in
# the Vision Only row); problem 2: free form, gold 3.
ROWS = [
    ("1", "Text Dominant", "\\boxed{D}", True),              # option letter
    ("2", "Text Lite", "<answer>70°</answer>", True),         # the gold option's text
    ("3", "Vision Intensive", "<answer>(D) 70°</answer>", True),
    ("4", "Vision Dominant", "<answer>C</answer>", False),
    ("5", "Vision Only", "\\boxed{D}", True),
    ("6", "Text Dominant", "<answer>3.0</answer>", True),     # equivalent value (math-verify)
    ("7", "Vision Only", "<answer>4</answer>", False),
]


def test_parse_options_from_the_choices_block():
    assert parse_options("Find it.\nChoices:\nA:1\nB: 2 cm\n(C) 3") == {"A": "1", "B": "2 cm", "C": "3"}
    assert parse_options("no options here") == {}


def test_score_mathverse_per_version(tmp_path):
    write_mathverse(tmp_path / "data")
    responses = write_jsonl(tmp_path / "r.jsonl", [{"id": i, "response": r} for i, _, r, _ in ROWS])
    assert main(["score", "--benchmark", "mathverse", "--data", str(tmp_path / "data"), "--responses",
                 str(responses), "--output", str(tmp_path / "out")]) == 0
    samples = {s["id"]: s for s in map(json.loads, (tmp_path / "out" / "samples.jsonl").read_text().splitlines())}
    assert {i: samples[i]["correct"] for i, *_ in ROWS} == {i: v for i, _, _, v in ROWS}
    assert samples["2"]["correct_strict"] is False  # our choice verifier has no option texts for MathVerse
    m = json.loads((tmp_path / "out" / "results.json").read_text())["benchmarks"]["mathverse"]
    by_version = m["subsets"]["problem_version"]
    assert {v: by_version[v]["accuracy"] for v in by_version} == pytest.approx(
        {"Text Dominant": 1.0, "Text Lite": 1.0, "Vision Intensive": 1.0, "Vision Dominant": 0.0, "Vision Only": 0.5})
    assert m["accuracy"] == pytest.approx(5 / 7)
