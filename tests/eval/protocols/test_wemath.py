"""We-Math: row verdicts by the official 'Answer' rule and the four-dimensional metrics, with expected
values worked out by hand from the definitions in four_dimensional_metrics.py / accuracy.py."""

from __future__ import annotations

import json

import pytest

from eval.__main__ import main
from eval.protocols.wemath import classify, four_dimensional, read_letter
from tests.eval.fixtures import WEMATH_ROWS, write_jsonl, write_wemath

# One response per row (ids ID/key). Per problem: sub-problem verdicts -> composite verdict -> category.
RESPONSES = {
    # 2steps_1: both sub-problems right, composite right -> CM (strict and loose)
    "2steps_1/2steps_1": "<Thought process>: side 2 <Answer>: <B>",
    "2steps_1/2steps_2": "Answer: A.",
    "2steps_1/2steps_multi": "<think>area</think><answer>C</answer>",   # no 'Answer': our <answer> block
    # 2steps_2: one sub-problem wrong, composite right -> CM loose, RM strict
    "2steps_2/2steps_1": "\\boxed{A}",                                  # no 'Answer': our \boxed{}
    "2steps_2/2steps_2": "<Answer>: <C>",                               # gold D: wrong
    "2steps_2/2steps_multi": "... so the Answer: B",
    # 2steps_3: both sub-problems wrong, composite right -> RM (strict and loose)
    "2steps_3/2steps_1": "Answer: the answer is C",                     # reads 't': no letter, wrong
    "2steps_3/2steps_2": "I think it is C",                             # no 'Answer': reads 'I', wrong
    "2steps_3/2steps_multi": "Answer:<A>",
    # 3steps_1: all three right, composite wrong -> IG
    "3steps_1/3steps_1": "Answer: A", "3steps_1/3steps_2": "Answer: B", "3steps_1/3steps_3": "Answer: C",
    "3steps_1/3steps_multi": "Answer: B",
    # 3steps_2: one wrong, composite wrong -> IK
    "3steps_2/3steps_1": "Answer: C", "3steps_2/3steps_2": "Answer: A", "3steps_2/3steps_3": "Answer: E",
    "3steps_2/3steps_multi": "Answer: C",
}


@pytest.mark.parametrize("response, letter", [
    ("<Thought process>: x <Answer>: <B>", "B"),
    ("Answer: the answer is C", None),
    ("First Answer: A, final Answer: D.", "D"),
    ("<answer>C</answer>", "C"),
    ("\\boxed{E}", "E"),
    ("B", "B"),
    ("answer: b", None),
    ("Answer: F", "F"),
    ("Answer: I", None),
    ("x\nAnswer: (C)", None),      # '(' is not stripped: no letter
])
def test_official_answer_rule(response, letter):
    assert read_letter(response) == letter


def test_categories_follow_the_definitions():
    assert classify([True, True], True) == {"IK": 0, "IG": 0, "CM_strict": 1, "CM_loose": 1, "RM_strict": 0,
                                            "RM_loose": 0}
    assert classify([True, False], True) == {"IK": 0, "IG": 0, "CM_strict": 0, "CM_loose": 1, "RM_strict": 1,
                                             "RM_loose": 0}
    assert classify([False, False, False], True)["RM_loose"] == 1
    assert classify([True, True, True], False) == {"IK": 0, "IG": 1, "CM_strict": 0, "CM_loose": 0,
                                                   "RM_strict": 0, "RM_loose": 0}
    assert classify([False, True], False)["IK"] == 1
    empty = four_dimensional([])
    assert empty["IK"] is None and empty["score_strict"] is None


def _published_json(root):
    """testmini.json as on GitHub: a list of rows whose image_path is a path (images not extracted)."""
    rows = [{**r, "image_path": r["image_path"]["path"]} for r in WEMATH_ROWS]
    (root / "wemath").mkdir(parents=True)
    (root / "wemath" / "testmini.json").write_text(json.dumps(rows))


@pytest.mark.parametrize("layout", ["parquet", "json"])
def test_score_wemath_four_dimensional_metrics(tmp_path, layout):
    write_wemath(tmp_path / "data") if layout == "parquet" else _published_json(tmp_path / "data")
    responses = write_jsonl(tmp_path / "r.jsonl", [{"id": k, "response": v} for k, v in RESPONSES.items()])
    assert main(["score", "--benchmark", "wemath", "--data", str(tmp_path / "data"), "--responses",
                 str(responses), "--output", str(tmp_path / "out")]) == 0
    m = json.loads((tmp_path / "out" / "results.json").read_text())["benchmarks"]["wemath"]
    # 5 problems: CM(2steps_1), CM-loose+RM-strict(2steps_2), RM(2steps_3), IG(3steps_1), IK(3steps_2)
    assert m["four_dimensional_counts"] == {"IK": 1, "IG": 1, "CM_strict": 1, "CM_loose": 2, "RM_strict": 2,
                                            "RM_loose": 1}
    assert m["n_problems"] == 5 and m["n_incomplete"] == 0
    assert (m["IK"], m["IG"], m["CM_strict"], m["CM_loose"]) == pytest.approx((0.2, 0.2, 0.2, 0.4))
    assert m["RM_strict"] == pytest.approx(2 / 3) and m["RM_loose"] == pytest.approx(1 / 3)  # RM / (CM + RM)
    assert m["score_strict"] == pytest.approx((5 - 0.5 * 1 - 2 - 1) / 5)
    assert m["score_loose"] == pytest.approx((5 - 0.5 * 1 - 1 - 1) / 5)
    assert m["S1"] == pytest.approx(8 / 12) and m["S2"] == 1.0 and m["S3"] == 0.0
    assert m["accuracy"] == pytest.approx(11 / 17) and m["n"] == 17
    fixed = m["four_dimensional_fixed_525"]  # the official script's literal denominator, 525
    assert fixed["IK"] == pytest.approx(1 / 525) and fixed["CM_loose"] == pytest.approx(2 / 525)
    assert fixed["score_strict"] == pytest.approx((525 - 0.5 - 2 - 1) / 525) and fixed["RM_strict"] == pytest.approx(2 / 3)
    samples = {s["id"]: s for s in map(json.loads, (tmp_path / "out" / "samples.jsonl").read_text().splitlines())}
    assert samples["2steps_3/2steps_1"]["correct"] is False and samples["2steps_3/2steps_1"]["correct_strict"] is True
    assert "IK" in (tmp_path / "out" / "results.md").read_text()


def test_row_index_ids_and_a_shared_id_hint(tmp_path, capsys):
    write_wemath(tmp_path / "data")
    by_index = write_jsonl(tmp_path / "i.jsonl", [{"id": i, "response": "Answer: B"} for i in range(17)])
    assert main(["score", "--benchmark", "wemath", "--data", str(tmp_path / "data"), "--responses",
                 str(by_index), "--output", str(tmp_path / "out")]) == 0
    m = json.loads((tmp_path / "out" / "results.json").read_text())["benchmarks"]["wemath"]
    assert m["n"] == 17 and m["accuracy"] == pytest.approx(4 / 17)  # golds: B appears 4 times
    shared = write_jsonl(tmp_path / "s.jsonl", [{"id": "2steps_1", "response": "Answer: B"}])
    assert main(["score", "--benchmark", "wemath", "--data", str(tmp_path / "data"), "--responses",
                 str(shared), "--output", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'2steps_1' is shared by 3 wemath rows" in err[0] and "ID/key" in err[0]


def test_incomplete_problem_left_out(tmp_path):
    write_wemath(tmp_path / "data")
    rows = [{"id": k, "response": v} for k, v in RESPONSES.items() if k != "3steps_2/3steps_multi"]
    responses = write_jsonl(tmp_path / "r.jsonl", rows)
    assert main(["score", "--benchmark", "wemath", "--data", str(tmp_path / "data"), "--responses",
                 str(responses), "--output", str(tmp_path / "out")]) == 0
    m = json.loads((tmp_path / "out" / "results.json").read_text())["benchmarks"]["wemath"]
    assert m["n_problems"] == 4 and m["n_incomplete"] == 1 and m["four_dimensional_counts"]["IK"] == 0
