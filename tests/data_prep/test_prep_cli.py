"""The CLI contract: every input line ends up exactly once in <split>.jsonl or rejects.jsonl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from data_prep.__main__ import main
from data_prep.images import pixel_hash
from tests.data_prep.zoo import BAD, make_zoo

GOOD = ["good_png", "good_copy", "good_jpg", "cmyk", "exif", "palette", "la", "gray16", "bilevel", "nested",
        "link_in", "absolute_in"]


def write_input(base: Path) -> tuple[Path, Path, int]:
    """A JSONL mixing every good and bad image kind with bad JSON/field lines; returns (file, root, lines)."""
    root = base / "imgs"
    kinds = make_zoo(root)
    lines = [json.dumps({"id": kind, "question": f"What is shown in {kind}?", "answer": "cat", "image": path})
             for kind, path in kinds.items()]
    lines += [
        '{"id": "broken", "prompt": ',
        "",
        json.dumps({"id": "no-prompt", "answer": "1", "image": "good_png.png"}),
        json.dumps({"id": "empty-answer", "prompt": "q", "answer": "  "}),
        json.dumps({"id": "good_png", "prompt": "dup id", "answer": "1"}),
        json.dumps({"id": "two", "prompt": "Compare <image> and <image>", "answer": "same",
                    "images": ["good_png.png", "good_copy.png"]}),
        json.dumps({"id": "text-only", "problem": "2+3?", "answer": 5}),
        "[1, 2]",
    ]
    path = base / "input.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, root, len(lines)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


def test_every_line_is_accounted_for_exactly_once(tmp_path: Path, capsys) -> None:
    path, root, n_lines = write_input(tmp_path)
    out = tmp_path / "out"
    assert run_cli("jsonl", "--input", path, "--image-root", root, "--output", out,
                   "--max-image-pixels", 1_000_000) == 0
    stdout = capsys.readouterr().out.strip()
    assert stdout.startswith("prepared ") and stdout.endswith(f"-> {out}") and "\n" not in stdout

    records, rejects = read_jsonl(out / "train.jsonl"), read_jsonl(out / "rejects.jsonl")
    assert len(records) + len(rejects) == n_lines
    summary = json.loads((out / "summary.json").read_text())["train"]
    assert summary["in"] == n_lines == summary["out"] + summary["rejected"]
    assert summary["out"] == len(records) and sum(summary["rejected_by_reason"].values()) == len(rejects)
    assert all(r["reason"] and r["split"] == "train" and "line" in r for r in rejects)
    lines_seen = sorted([r["line"] for r in rejects] + [int(r["id"].rsplit("-", 1)[1]) for r in records
                                                         if r["id"].startswith("input-")])
    assert len(set(lines_seen)) == len(lines_seen)

    accepted = {r["id"] for r in records}
    assert accepted == {*GOOD, "two", "text-only"}
    by_id = {r.get("id"): r for r in rejects}
    for kind, reason in BAD.items():
        assert by_id[kind]["reason"] == reason
    by_line = {r["line"]: r["reason"] for r in rejects}
    start = len(BAD) + len(GOOD) + 1
    malformed = next(r for r in rejects if r["line"] == start)
    assert f"line {start}:" in malformed["detail"] and malformed["id"] == "broken"
    assert [by_line[start + i] for i in range(5)] == [
        "malformed_json", "blank_line", "missing_prompt", "empty_answer", "duplicate_id"]
    assert by_line[n_lines] == "bad_record"

    # every output image is a readable RGB file; none comes from a bad or outside input
    outside = pixel_hash(Image.open(root.parent / "imgs_outside" / "secret.png").convert("RGB"))
    stored = sorted((out / "images").iterdir())
    for image_path in stored:
        with Image.open(image_path) as image:
            image.load()
            assert image.mode == "RGB"
            assert pixel_hash(image) != outside
    referenced = {p for r in records for p in r["images"]}
    assert {f"images/{p.name}" for p in stored} == referenced
    assert len(referenced) == 9  # 12 good kinds: good_copy = good_png; link_in, absolute_in = good_jpg
    two = next(r for r in records if r["id"] == "two")
    assert two["prompt"] == "Compare and" and two["images"][0] == two["images"][1]


def test_second_split_does_not_clobber_the_first(tmp_path: Path) -> None:
    path, root, n_lines = write_input(tmp_path)
    out = tmp_path / "out"
    assert run_cli("jsonl", "--input", path, "--image-root", root, "--output", out) == 0
    assert run_cli("jsonl", "--input", path, "--image-root", root, "--output", out, "--split", "test",
                   "--format", "parquet") == 0
    assert run_cli("jsonl", "--input", path, "--image-root", root, "--output", out) == 0  # rerun replaces
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"train", "test"}
    rejects = read_jsonl(out / "rejects.jsonl")
    assert sum(r["split"] == "train" for r in rejects) == summary["train"]["rejected"]
    assert sum(r["split"] == "test" for r in rejects) == summary["test"]["rejected"]
    assert len(read_jsonl(out / "train.jsonl")) == summary["train"]["out"]
    import pyarrow.parquet as pq

    table = pq.read_table(out / "test.parquet")
    assert table.num_rows == summary["test"]["out"] and table.column_names[:3] == ["id", "images", "prompt"]


@pytest.mark.parametrize("argv, message", [
    (["jsonl", "--input", "nope.jsonl", "--output", "o"], "input not found"),
    (["jsonl", "--output", "o"], "--input"),
    (["jsonl", "--input", "x", "--output", "o", "--max-image-pixels", "0"], "must be >= 1"),
    (["nosuchsource"], "invalid choice"),
    (["synthetic", "--task", "nope", "--output", "o"], "unknown --task"),
    (["jsonl", "--input", "x", "--output", "o", "--max-prompt-tokens", "10"], "needs --processor"),
])
def test_user_mistakes_exit_2_with_one_line(tmp_path: Path, monkeypatch, capsys, argv, message) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").write_text("")
    code = run_cli(*argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err and "Traceback" not in err


def test_module_entry_point_runs_as_a_process(tmp_path: Path) -> None:
    path, root, n_lines = write_input(tmp_path)
    result = subprocess.run([sys.executable, "-m", "data_prep", "jsonl", "--input", str(path), "--image-root",
                             str(root), "--output", str(tmp_path / "o")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and "prepared" in result.stdout
    missing = subprocess.run([sys.executable, "-m", "data_prep", "jsonl", "--input", str(tmp_path / "none"),
                              "--output", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
