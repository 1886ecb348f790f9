"""Small copies of each benchmark in its published layout and column names (see shared/benchmarks.md)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def png_bytes(color: str = "red", size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


GSM8K_ROWS = [
    {"question": "Tom has 3 apples and buys 4 more. How many apples?",
     "answer": "He has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"},
    {"question": "A shop sells 1,000 pens a day for 2 days. How many pens?",
     "answer": "1000 * 2 = <<1000*2=2000>>2000\n#### 2,000"},
    {"question": "Half of 9?", "answer": "9 / 2 = 4.5\n#### 4.5"},
]

MATH500_ROWS = [
    {"problem": "Convert $(0,3)$ to polar coordinates.", "solution": "... $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$",
     "answer": "\\left( 3, \\frac{\\pi}{2} \\right)", "subject": "Precalculus", "level": 2,
     "unique_id": "test/precalculus/807.json"},
    {"problem": "What is $\\frac{1}{2}+\\frac{1}{4}$?", "solution": "$\\boxed{\\frac34}$", "answer": "\\frac{3}{4}",
     "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/1.json"},
    {"problem": "Compute $\\sqrt{8}$.", "solution": "$\\boxed{2\\sqrt{2}}$", "answer": "2\\sqrt{2}",
     "subject": "Algebra", "level": 1, "unique_id": "test/algebra/2.json"},
]


def write_gsm8k(root: Path) -> Path:
    return write_parquet(root / "gsm8k" / "main" / "test-00000-of-00001.parquet", GSM8K_ROWS)


def write_math500(root: Path) -> Path:
    return write_jsonl(root / "math500" / "test.jsonl", MATH500_ROWS)


def _meta(category: str) -> dict:
    return {"category": category, "context": "geometry diagram", "grade": "high school", "img_height": 32,
            "img_width": 32, "language": "english", "skills": ["algebraic reasoning"], "source": "GeoQA+",
            "split": "testmini", "task": "geometry problem solving"}


def write_mathvista(root: Path) -> Path:
    img = {"bytes": png_bytes("blue"), "path": None}
    rows = [
        {"pid": "1", "question": "Find the angle.", "image": "images/1.jpg", "decoded_image": img,
         "choices": ["120°", "145°", "160°"], "unit": None, "precision": None, "answer": "145°",
         "question_type": "multi_choice", "answer_type": "text", "metadata": _meta("math-targeted-vqa"),
         "query": "Hint: answer with the option letter.\nQuestion: Find the angle.\nChoices:\n(A) 120°\n(B) 145°\n(C) 160°"},
        {"pid": "2", "question": "How long is the side?", "image": "images/2.jpg", "decoded_image": img,
         "choices": None, "unit": "cm", "precision": 1.0, "answer": "2.5", "question_type": "free_form",
         "answer_type": "float", "metadata": _meta("math-targeted-vqa"),
         "query": "Hint: answer with one decimal place.\nQuestion: How long is the side? (Unit: cm)"},
        {"pid": "3", "question": "How many bars?", "image": "images/3.jpg", "decoded_image": img,
         "choices": None, "unit": None, "precision": None, "answer": "4", "question_type": "free_form",
         "answer_type": "integer", "metadata": _meta("general-vqa"),
         "query": "Hint: answer with an integer.\nQuestion: How many bars?"},
        {"pid": "4", "question": "What is the ratio?", "image": "images/4.jpg", "decoded_image": img,
         "choices": None, "unit": None, "precision": 2.0, "answer": "1.33", "question_type": "free_form",
         "answer_type": "float", "metadata": _meta("general-vqa"),
         "query": "Hint: two decimal places.\nQuestion: What is the ratio?"},
    ]
    return write_parquet(root / "mathvista" / "data" / "testmini-00000-of-00001-725687bf7a18d64b.parquet", rows)


def write_geo3k(root: Path) -> Path:
    rows = [
        {"images": [{"bytes": png_bytes("green"), "path": None}], "problem": "<image>Find x.", "answer": "2 \\sqrt { 221 }"},
        {"images": [{"bytes": png_bytes("white"), "path": None}], "problem": "<image>Find y.", "answer": "60"},
    ]
    return write_parquet(root / "geo3k" / "data" / "test-00000-of-00001.parquet", rows)


def write_mathverse(root: Path) -> Path:
    meta = {"split": "testmini", "source": "GeoQA", "subject": "Plane Geometry", "subfield": "Angle"}
    rows = [
        {"sample_index": "1", "problem_index": "1", "problem_version": "Text Dominant",
         "question": "As shown, find the angle.\nChoices:\nA:40°\nB:50°\nC:60°\nD:70°", "image": {"bytes": png_bytes(), "path": "1.png"},
         "answer": "D", "question_type": "multi-choice", "metadata": meta, "query_wo": "q", "query_cot": "As shown, find the angle. Choices: A:40° B:50° C:60° D:70°",
         "question_for_eval": "q"},
        {"sample_index": "2", "problem_index": "1", "problem_version": "Vision Only",
         "question": "", "image": {"bytes": png_bytes(), "path": "2.png"},
         "answer": "3", "question_type": "free-form", "metadata": meta, "query_wo": "q",
         "query_cot": "According to the question shown in the image, answer it.", "question_for_eval": "q"},
    ]
    return write_parquet(root / "mathverse" / "testmini.parquet", rows)


def write_mathvision(root: Path) -> Path:
    img = {"bytes": png_bytes(), "path": "images/1.jpg"}
    rows = [
        {"id": "1", "question": "Which shape is next? <image1>", "options": ["A", "B", "C", "D", "E"],
         "image": "images/1.jpg", "decoded_image": img, "answer": "C", "solution": None, "level": 1,
         "subject": "logic"},
        {"id": "17", "question": "How many dots? <image1>", "options": [], "image": "images/17.jpg",
         "decoded_image": img, "answer": "12", "solution": None, "level": 2, "subject": "counting"},
    ]
    return write_parquet(root / "mathvision" / "data" / "testmini-00000-of-00001-f8ff70fcb2f29b1d.parquet", rows)


def write_wemath(root: Path) -> Path:
    rows = [
        {"ID": "2steps_1", "split": "testmini", "knowledge concept": "Area", "question": "What is the area?",
         "option": "A. 3 cm²;B. 4 cm²;C. 5 cm²;D. No correct answer", "answer": "B",
         "image_path": {"bytes": png_bytes(), "path": "1.png"}, "key": "2steps_1", "question number": 1,
         "knowledge concept description": "area of a square"},
    ]
    return write_parquet(root / "wemath" / "data" / "testmini-00000-of-00001-adbfe22dcd3558e6.parquet", rows)


def write_aime24(root: Path) -> Path:
    rows = [{"id": 60, "problem": "Find the answer.", "solution": "...", "answer": "204", "url": "u", "year": "2024"},
            {"id": 61, "problem": "Find another.", "solution": "...", "answer": "025", "url": "u", "year": "2024"}]
    return write_parquet(root / "aime24" / "data" / "train-00000-of-00001.parquet", rows)


def write_aime25(root: Path) -> None:
    write_jsonl(root / "aime25" / "aime2025-I.jsonl", [{"question": "First?", "answer": "70"}])
    write_jsonl(root / "aime25" / "aime2025-II.jsonl", [{"question": "Second?", "answer": "588"}])


def write_amc23(root: Path) -> Path:
    rows = [{"id": 0, "problem": "AMC problem", "answer": 27.0, "url": "u"},
            {"id": 1, "problem": "Another", "answer": 0.5, "url": "u"}]
    return write_parquet(root / "amc23" / "test-00000-of-00001.parquet", rows)


def write_hmmt25(root: Path) -> Path:
    rows = [{"problem_idx": 1, "problem": "HMMT problem", "answer": "\\frac{9\\sqrt{3}}{2}", "problem_type": ["Geometry"]}]
    return write_parquet(root / "hmmt25" / "data" / "train-00000-of-00001.parquet", rows)


def write_prepared(root: Path, name: str) -> Path:
    """A data_prep-style prepared directory: test.jsonl + images/ (+ rejects.jsonl, summary.json)."""
    folder = root / name
    (folder / "images").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), "red").save(folder / "images" / "a.png")
    rows = [{"id": "s0", "images": ["images/a.png"], "prompt": "What colour is the square?", "answer": "red",
             "answer_type": "text", "source": name, "split": "test"},
            {"id": "s1", "images": ["images/a.png"], "prompt": "Which shape?", "answer": "B",
             "answer_type": "choice", "choices": ["circle", "square"], "source": name, "split": "test"}]
    write_jsonl(folder / "rejects.jsonl", [{"reason": "corrupt image"}])
    (folder / "summary.json").write_text("{}")
    return write_jsonl(folder / "test.jsonl", rows)


WRITERS = {
    "gsm8k": write_gsm8k, "math500": write_math500, "mathvista": write_mathvista, "geo3k": write_geo3k,
    "mathverse": write_mathverse, "mathvision": write_mathvision, "wemath": write_wemath,
    "aime24": write_aime24, "aime25": write_aime25, "amc23": write_amc23, "hmmt25": write_hmmt25,
    "synthetic": lambda root: write_prepared(root, "synthetic"),
    "easy_vqa": lambda root: write_prepared(root, "easy_vqa"),
}
