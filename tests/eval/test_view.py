"""`mhpo-eval view`: data folder found from results.json or --data-dir, notes when missing, one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

from eval.__main__ import main
from tests.eval.fixtures import write_gsm8k, write_jsonl, write_mathvista


def _data(page: Path) -> dict:
    block = re.search(r'<script type="application/json" id="viewer-data">(.*?)</script>', page.read_text(), re.S)
    return json.loads(block.group(1))


def _score(tmp_path: Path, benchmark: str, rows: list[dict], out: str = "out") -> Path:
    responses = write_jsonl(tmp_path / f"{benchmark}_responses.jsonl", rows)
    assert main(["score", "--benchmark", benchmark, "--data", str(tmp_path / "data"), "--responses", str(responses),
                 "--output", str(tmp_path / out)]) == 0
    return tmp_path / out


def test_view_finds_the_recorded_data_folder_and_shows_prompts_references_subsets(tmp_path):
    write_mathvista(tmp_path / "data")
    out = _score(tmp_path, "mathvista", [{"id": "1", "response": "<answer>B</answer>"},
                                         {"id": "3", "response": "<answer>7</answer>"}])
    recorded = json.loads((out / "results.json").read_text())["benchmarks"]["mathvista"]["data_dir"]
    assert recorded == str((tmp_path / "data").resolve())
    assert main(["view", str(out)]) == 0
    data = _data(out / "viewer" / "index.html")
    items = {it["id"]: it for it in data["items"]}
    assert set(items) == {"1", "3"} and items["1"]["answer"] == "145°" and "Find the angle" in items["1"]["prompt"]
    assert items["1"]["samples"][0][0]["correct"] is True and items["3"]["samples"][0][0]["extracted"] == "7"
    assert data["subsets"]["question_type"] == ["free_form", "multi_choice"]
    assert all((out / "viewer" / "images" / im["file"]).is_file() for it in items.values() for im in it["images"])


def test_view_without_data_still_shows_samples_and_says_why(tmp_path, capsys):
    write_gsm8k(tmp_path / "data")
    out = _score(tmp_path, "gsm8k", [{"id": "0", "response": "7"}])
    results = json.loads((out / "results.json").read_text())
    results["benchmarks"]["gsm8k"]["data_dir"] = None  # e.g. an output written before data_dir was recorded
    (out / "results.json").write_text(json.dumps(results))
    assert main(["view", str(out), "--out", str(tmp_path / "v")]) == 0
    assert "pass --data-dir" in capsys.readouterr().err
    item = _data(tmp_path / "v" / "index.html")["items"][0]
    assert "prompt" not in item and item["samples"][0][0]["response"] == "7"
    assert main(["view", str(out), "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "v2")]) == 0
    assert "3 apples" in _data(tmp_path / "v2" / "index.html")["items"][0]["prompt"]


def test_compare_joins_ids_and_labels_two_outputs(tmp_path):
    write_gsm8k(tmp_path / "data")
    a = _score(tmp_path, "gsm8k", [{"id": "0", "response": "7"}, {"id": "1", "response": "3"}], "a")
    b = _score(tmp_path, "gsm8k", [{"id": "1", "response": "2000"}, {"id": "2", "response": "4.5"}], "b")
    assert main(["view", str(a), "--compare", str(b), "--out", str(tmp_path / "v")]) == 0
    data = _data(tmp_path / "v" / "index.html")
    assert [r["label"] for r in data["runs"]] == ["a", "b"]
    by_id = {it["id"]: [len(s) for s in it["samples"]] for it in data["items"]}
    assert by_id == {"0": [1, 0], "1": [1, 1], "2": [0, 1]}


def test_view_mistakes_are_one_line_errors(tmp_path, capsys):
    assert main(["view", str(tmp_path / "missing")]) == 2
    assert "eval output directory not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["view", str(tmp_path / "empty")]) == 2
    assert "no samples.jsonl" in capsys.readouterr().err
