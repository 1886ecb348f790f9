"""reasoning-gym source: task arguments, disjoint held-out/train question texts, counted drops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_prep.__main__ import main
from data_prep.errors import DataPrepError
from data_prep.sources.text_tasks import parse_task_args

pytest.importorskip("reasoning_gym")

# 2 terms of 1 digit: only 10 * 10 * 2 = 200 distinct questions, so repeats are certain.
SMALL = "min_terms=2,max_terms=2,min_digits=1,max_digits=1"


def _prep(out: Path, *argv: object) -> int:
    return main(["reasoning_gym", "--task", "chain_sum", *map(str, argv), "--output", str(out)])


def _records(out: Path, split: str) -> list[dict]:
    return [json.loads(x) for x in (out / f"{split}.jsonl").read_text().splitlines()]


def _summary(out: Path, split: str) -> dict:
    return json.loads((out / "summary.json").read_text())[split]


def test_task_args_reach_the_generator(tmp_path: Path) -> None:
    assert _prep(tmp_path, "--task-args", "min_terms=4,max_terms=4,min_digits=2,max_digits=2", "--n", 6) == 0
    records = _records(tmp_path, "train")
    assert len(records) == 6
    for r in records:
        expression = r["meta"]["task_metadata"]["expression"]
        terms = expression.replace("-", "+").split("+")
        assert len(terms) == 4 and all(len(t.strip()) == 2 for t in terms), expression
        assert r["meta"]["task_args"] == {"min_terms": 4, "max_terms": 4, "min_digits": 2, "max_digits": 2}


def test_held_out_unique_and_train_disjoint(tmp_path: Path) -> None:
    assert _prep(tmp_path, "--task-args", SMALL, "--n", 150, "--unique", "--split", "test") == 0
    test = _records(tmp_path, "test")
    assert len(test) == 150 and len({r["prompt"] for r in test}) == 150
    assert _summary(tmp_path, "test")["rejected_by_reason"].get("duplicate_question", 0) > 0

    assert _prep(tmp_path, "--task-args", SMALL, "--n", 300, "--exclude-split", "test", "--split", "train") == 0
    train = _records(tmp_path, "train")
    assert len(train) == 300
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    summary = _summary(tmp_path, "train")
    assert summary["rejected_by_reason"]["question_in_other_split"] > 0
    assert summary["in"] == summary["out"] + summary["rejected"]
    rejects = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert any(r["reason"] == "question_in_other_split" for r in rejects)


def test_a_task_space_too_small_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert _prep(tmp_path, "--task-args", SMALL, "--n", 201, "--unique", "--split", "test") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "only 200 new questions" in err[0]


def test_bad_task_args_name_the_option(tmp_path: Path, capsys) -> None:
    assert _prep(tmp_path, "--task-args", "min_terms=2,bogus_key=3", "--n", 2) == 2
    err = capsys.readouterr().err
    assert "--task-args" in err and "bogus_key" in err
    assert _prep(tmp_path, "--exclude-split", "nope", "--n", 2) == 2
    assert "nope.jsonl" in capsys.readouterr().err
    with pytest.raises(DataPrepError, match="name=value"):
        parse_task_args("min_terms")
    assert parse_task_args("a=1, b=0.5 ,c=true,d=x") == {"a": 1, "b": 0.5, "c": True, "d": "x"}
