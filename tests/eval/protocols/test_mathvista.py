"""MathVista: verdicts row by row as lupantech/MathVista's calculate_score.py defines them
(normalize_extracted_answer + safe_equal), with our rules standing in for the GPT extraction."""

from __future__ import annotations

import json

import pytest

from eval.__main__ import main
from eval.protocols.mathvista import edit_distance, nearest_choice, normalize
from tests.eval.fixtures import write_jsonl, write_mathvista

# (pid, response, official verdict, why). Golds: 1 "145°" of 120°/145°/160°; 2 "2.5" (float, precision 1);
# 3 "4" (integer); 4 "1.33" (float, precision 2); 5 "70°" of 60°/70°/80°; 6 "9335" (integer);
# 7 "[1, 2, 3]" (list); 8 "3" of 3/10/100.
ROWS = [
    ("1", "<answer>B</answer>", True, "option letter -> option text"),
    ("1", "\\boxed{(B) 145°}", True, "a (B) in the text selects B"),
    ("1", "<answer>b</answer>", False, "lowercase b is no option letter; nearest option by edit distance is 120°"),
    ("1", 'The answer is "145°".', True, "official quick-extract pattern"),
    ("1", "\\boxed{\\text{B}}", True, "wrapper removed as the GPT extractor would: option letter B"),
    ("2", "<answer>2.54 cm</answer>", False, "float('2.54 cm') fails"),
    ("2", "<answer>2.54</answer>", True, "round(2.54, 1) = 2.5"),
    ("2", "<answer>$2.5$</answer>", True, "$...$ removed, then float('2.5')"),
    ("3", "4", True, "the response itself parses as an integer"),
    ("3", "<answer>4.7</answer>", True, "int(float('4.7')) = 4"),
    ("4", "<answer>1.333</answer>", True, "round(1.333, 2) = 1.33"),
    ("4", "<answer>4/3</answer>", False, "float('4/3') fails"),
    ("5", "<answer>70</answer>", True, "nearest option to '70' is '70°'"),
    ("5", "\\boxed{C}", False, "C is 80°"),
    ("6", "<answer>9,335</answer>", False, "float('9,335') fails"),
    ("6", "<answer>9335</answer>", True, "exact"),
    ("7", "<answer>[1,2,3]</answer>", False, "lists compare as text: '[1,2,3]' != '[1, 2, 3]'"),
    ("7", "<answer>[1, 2, 3]</answer>", True, "same text"),
    ("8", "I cannot read the figure. " * 6, True, "no answer: '' is nearest to the shortest option, '3'"),
]


def test_official_normalisation_rules():
    assert edit_distance("", "abc") == 3 and edit_distance("70", "70°") == 1
    assert nearest_choice("", ["10", "3", "100"]) == "3"
    assert normalize("A", ["x", "y"], "multi_choice", "text", None) == "x"
    assert normalize(None, [], "free_form", "integer", None) is None
    assert normalize("2.55", [], "free_form", "float", 1) == str(round(2.55, 1))
    assert normalize("[1,2]", [], "free_form", "list", None) == "[1,2]"


def test_score_mathvista_row_by_row(tmp_path):
    write_mathvista(tmp_path / "data")
    # one response per line; rows of the same pid are several samples of that problem
    responses = write_jsonl(tmp_path / "r.jsonl", [{"id": pid, "response": text} for pid, text, _, _ in ROWS])
    assert main(["score", "--benchmark", "mathvista", "--data", str(tmp_path / "data"), "--responses",
                 str(responses), "--output", str(tmp_path / "out")]) == 0
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    by_response = {(s["id"], s["response"]): s for s in samples}
    for pid, text, verdict, why in ROWS:
        assert by_response[(pid, text)]["correct"] is verdict, (pid, text, why)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    m = results["benchmarks"]["mathvista"]
    assert m["accuracy"] == pytest.approx(sum(v for *_, v, _ in ROWS) / len(ROWS))
    assert m["accuracy_strict"] != m["accuracy"]  # e.g. 9,335 and 2.54 cm pass our verifiers
    assert by_response[("6", "<answer>9,335</answer>")]["correct_strict"] is True
    assert m["protocol"]["name"] == "mathvista" and "calculate_score.py" in m["protocol"]["source"]
    assert "GPT" in results["extraction_note"]
    assert set(m["subsets"]) >= {"question_type", "task", "answer_type"}
    assert m["subsets"]["task"]["textbook question answering"]["n"] == 1
    assert m["skills"]["algebraic reasoning"]["n_samples"] == len(ROWS)  # every fixture row has this skill


def test_score_the_published_json_without_images(tmp_path):
    from tests.eval.fixtures import MATHVISTA_ROWS

    folder = tmp_path / "data" / "mathvista"
    folder.mkdir(parents=True)  # testmini.json keyed by pid, image paths only (images.zip not extracted)
    annot = {r["pid"]: {k: v for k, v in r.items() if k != "decoded_image"} for r in MATHVISTA_ROWS}
    (folder / "testmini.json").write_text(json.dumps(annot))
    responses = write_jsonl(tmp_path / "r.jsonl", [{"id": "5", "response": "<answer>70</answer>"},
                                                   {"id": "6", "response": "<answer>9,335</answer>"}])
    assert main(["score", "--benchmark", "mathvista", "--data", str(tmp_path / "data"), "--responses",
                 str(responses), "--output", str(tmp_path / "out")]) == 0
    m = json.loads((tmp_path / "out" / "results.json").read_text())["benchmarks"]["mathvista"]
    assert m["accuracy"] == 0.5 and m["accuracy_strict"] == 0.5  # 70 -> 70° official only; 9,335 strict only
