"""Each adapter on a small fixture with the real column names of its dataset."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from data_prep.__main__ import main
from data_prep.sources.benchmarks import last_boxed


def png_bytes(color: tuple[int, int, int], size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def prep(out: Path, *argv: object, split: str = "train") -> tuple[list[dict], list[dict]]:
    assert main([str(a) for a in (*argv, "--output", out, "--split", split)]) == 0
    records = [json.loads(x) for x in (out / f"{split}.jsonl").read_text().splitlines()]
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    return records, rejects


def test_llava_json(tmp_path: Path) -> None:
    Image.new("RGB", (30, 30), (0, 0, 255)).save(tmp_path / "a.png")
    data = [
        {"id": "l1", "image": "a.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat colour is this?"}, {"from": "gpt", "value": "blue"},
            {"from": "human", "value": "Sure?"}, {"from": "gpt", "value": "yes"}]},
        {"id": "l2", "conversations": [{"from": "human", "value": "Say hi"}]},
        {"id": "l3", "conversations": "oops"},
    ]
    (tmp_path / "llava.json").write_text(json.dumps(data))
    records, rejects = prep(tmp_path / "out", "llava", "--input", tmp_path / "llava.json")
    assert [(r["id"], r["prompt"], r["answer"], len(r["images"])) for r in records] == [
        ("l1", "What colour is this?", "blue", 1)]
    assert records[0]["meta"] == {"turns": 4}
    assert [(r["id"], r["reason"]) for r in rejects] == [("l2", "missing_answer"), ("l3", "bad_record")]


def test_folder_with_csv(tmp_path: Path) -> None:
    Image.new("RGB", (30, 30), (255, 0, 0)).save(tmp_path / "r.png")
    (tmp_path / "metadata.csv").write_text(
        "file_name,question,answer,choices\n"
        "r.png,What colour?,red,red|green\n"
        "\n"
        "missing.png,What colour?,red,\n"
        "r.png,Too,many,fields,here\n"
        ",How much is 2+2?,4,\n")
    records, rejects = prep(tmp_path / "out", "folder", "--input", tmp_path)
    assert [(r["answer"], r["answer_type"], r.get("choices"), len(r["images"])) for r in records] == [
        ("red", "choice", ["red", "green"], 1), ("4", "numeric", None, 0)]
    assert [r["reason"] for r in rejects] == ["blank_line", "missing_image", "bad_record"]


def _datasets_parquet(path: Path, rows: dict, features: dict | None = None) -> None:
    import datasets

    datasets.Dataset.from_dict(rows, features=datasets.Features(features) if features else None).to_parquet(
        str(path))


def test_geo3k_parquet_with_image_lists(tmp_path: Path) -> None:
    import datasets

    folder = tmp_path / "geometry3k" / "data"
    folder.mkdir(parents=True)
    features = {"images": datasets.List(datasets.Image()), "problem": datasets.Value("string"),
                "answer": datasets.Value("string"), "id": datasets.Value("int64"),
                "choices": datasets.List(datasets.Value("string")), "ground_truth": datasets.Value("string")}
    rows = {"images": [[{"bytes": png_bytes((10, 10, 10)), "path": None}], [{"bytes": b"junk", "path": None}]],
            "problem": ["<image>Find x.", "<image>Find y."], "answer": ["2 \\sqrt { 221 }", "3"], "id": [0, 1],
            "choices": [["3", "2 \\sqrt { 221 }"], ["3", "4"]], "ground_truth": ["B", "A"]}
    _datasets_parquet(folder / "train-00000-of-00001.parquet", rows, features)
    _datasets_parquet(folder / "test-00000-of-00001.parquet", {k: v[:1] for k, v in rows.items()}, features)
    records, rejects = prep(tmp_path / "out", "geo3k", "--input", tmp_path / "geometry3k")
    assert len(records) == 1 and records[0]["prompt"] == "Find x." and records[0]["answer_type"] == "math"
    assert records[0]["answer"] == "2 \\sqrt { 221 }" and records[0]["id"] == "0"
    assert records[0]["meta"]["ground_truth"] == "B"
    assert rejects[0]["reason"] == "unreadable_image" and rejects[0]["index"] == 1


def test_hf_save_to_disk_with_column_mapping(tmp_path: Path) -> None:
    import datasets

    ds = datasets.Dataset.from_dict(
        {"img": [{"bytes": png_bytes((0, 200, 0)), "path": None}], "q": ["Colour?"], "a": ["green"]},
        features=datasets.Features({"img": datasets.Image(), "q": datasets.Value("string"),
                                    "a": datasets.Value("string")}))
    datasets.DatasetDict({"validation": ds}).save_to_disk(str(tmp_path / "saved"))
    records, _ = prep(tmp_path / "out", "hf", "--input", tmp_path / "saved", "--hf-split", "validation",
                      "--prompt-column", "q", "--answer-column", "a", "--image-column", "img")
    assert [(r["prompt"], r["answer"], len(r["images"])) for r in records] == [("Colour?", "green", 1)]
    assert main(["hf", "--input", str(tmp_path / "saved"), "--output", str(tmp_path / "o2")]) == 2


def test_hf_hub_id_unreachable_fails_at_once_with_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at the first try
    assert main(["hf", "--input", "someone/some-set", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'someone/some-set'" in err[0] and "unreachable" in err[0] and "--input" in err[0]


def test_mathvista_multi_choice_and_free_form(tmp_path: Path, capsys) -> None:
    import datasets

    features = {"pid": datasets.Value("string"), "question": datasets.Value("string"),
                "image": datasets.Value("string"), "decoded_image": datasets.Image(),
                "choices": datasets.List(datasets.Value("string")), "unit": datasets.Value("string"),
                "precision": datasets.Value("float64"), "answer": datasets.Value("string"),
                "question_type": datasets.Value("string"), "answer_type": datasets.Value("string"),
                "query": datasets.Value("string")}
    rows = {"pid": ["1", "2"], "question": ["Angle?", "How many?"], "image": ["images/1.jpg", "images/2.jpg"],
            "decoded_image": [{"bytes": png_bytes((1, 2, 3)), "path": None},
                              {"bytes": png_bytes((4, 5, 6)), "path": None}],
            "choices": [["145°", "35°"], None], "unit": [None, None], "precision": [None, None],
            "answer": ["145°", "7"], "question_type": ["multi_choice", "free_form"],
            "answer_type": ["text", "integer"],
            "query": ["Hint: ...\nQuestion: Angle?\nChoices:\n(A) 145°\n(B) 35°", "Question: How many?"]}
    _datasets_parquet(tmp_path / "testmini-00000-of-00001.parquet", rows, features)
    records, _ = prep(tmp_path / "out", "mathvista", "--input", tmp_path / "testmini-00000-of-00001.parquet",
                      split="train")
    assert "prohibits training" in capsys.readouterr().err
    assert [(r["id"], r["answer"], r["answer_type"], r.get("choices")) for r in records] == [
        ("1", "145°", "choice", ["145°", "35°"]), ("2", "7", "numeric", None)]
    assert records[0]["prompt"].startswith("Hint:") and records[1]["meta"]["mathvista_answer_type"] == "integer"


def test_clevr_count_answer_from_solution_tags(tmp_path: Path) -> None:
    import datasets

    rows = {"image": [{"bytes": png_bytes((90, 90, 90)), "path": None}] * 2,
            "problem": ["How many items are there in the image?"] * 2,
            "solution": ["<answer> 3 </answer>", "three"]}
    _datasets_parquet(tmp_path / "train-0.parquet", rows,
                      {"image": datasets.Image(), "problem": datasets.Value("string"),
                       "solution": datasets.Value("string")})
    records, rejects = prep(tmp_path / "out", "clevr_count", "--input", tmp_path)
    assert [(r["answer"], r["answer_type"]) for r in records] == [("3", "numeric")]
    assert rejects[0]["reason"] == "missing_answer"


def test_gsm8k_and_math_text_only(tmp_path: Path) -> None:
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"question": "Tom has 1,000 apples...", "answer": "He has <<1000+234=1234>>1234.\n#### 1,234"},
        {"question": "No final line", "answer": "just text"}]) + "\n")
    records, rejects = prep(tmp_path / "o1", "gsm8k", "--input", tmp_path / "gsm8k", split="test")
    assert [(r["answer"], r["answer_type"], r["images"]) for r in records] == [("1234", "numeric", [])]
    assert "1234" in records[0]["meta"]["solution"] and rejects[0]["reason"] == "missing_answer"

    (tmp_path / "math500.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"problem": "Convert (0,3) to polar.", "solution": "... $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$",
         "answer": "\\left( 3, \\frac{\\pi}{2} \\right)", "subject": "Precalculus", "level": 2,
         "unique_id": "test/precalculus/807.json"},
        {"problem": "MATH train row", "solution": "so it is $\\boxed{\\frac{1}{2}}$.", "level": "Level 3",
         "type": "Algebra"}]) + "\n")
    records, _ = prep(tmp_path / "o2", "math", "--input", tmp_path / "math500.jsonl", split="test")
    assert [(r["id"], r["answer"]) for r in records] == [
        ("test/precalculus/807.json", "\\left( 3, \\frac{\\pi}{2} \\right)"), ("math-test-1", "\\frac{1}{2}")]
    assert records[0]["meta"] == {"subject": "Precalculus", "level": 2}


@pytest.mark.parametrize("text, expected", [
    ("a \\boxed{1} then \\boxed{\\frac{a}{b}}", "\\frac{a}{b}"), ("none", None), ("\\boxed{open", None),
    ("\\fbox{7}", "7"),
])
def test_last_boxed(text, expected) -> None:
    assert last_boxed(text) == expected


def test_reasoning_gym_text_task(tmp_path: Path) -> None:
    pytest.importorskip("reasoning_gym")
    train, _ = prep(tmp_path / "o", "reasoning_gym", "--task", "basic_arithmetic", "--n", 5, "--seed", 1)
    test, _ = prep(tmp_path / "o", "reasoning_gym", "--task", "basic_arithmetic", "--n", 5, "--seed", 1,
                   split="test")
    assert len(train) == 5 and all(r["images"] == [] and r["answer_type"] == "numeric" for r in train)
    assert {r["prompt"] for r in train} != {r["prompt"] for r in test}
    assert train[0]["meta"]["task"] == "basic_arithmetic"
