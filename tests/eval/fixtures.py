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


def _vista_meta(category: str, task: str = "geometry problem solving", context: str = "geometry diagram") -> dict:
    return {"category": category, "context": context, "grade": "high school", "img_height": 32,
            "img_width": 32, "language": "english", "skills": ["algebraic reasoning"], "source": "GeoQA+",
            "split": "testmini", "task": task}


def _vista(pid: str, question: str, answer: str, *, choices=None, qtype="free_form", atype="integer",
           precision=None, unit=None, category="math-targeted-vqa", task="geometry problem solving") -> dict:
    hint = ("Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end."
            if qtype == "multi_choice" else "Please answer the question requiring an answer and provide the final "
            "value at the end.")
    lettered = "".join(f"\n({chr(65 + i)}) {c}" for i, c in enumerate(choices or []))
    query = f"Hint: {hint}\nQuestion: {question}" + (f"\nChoices:{lettered}" if choices else "")
    return {"pid": pid, "question": question, "image": f"images/{pid}.jpg",
            "decoded_image": {"bytes": png_bytes("blue"), "path": None}, "choices": choices, "unit": unit,
            "precision": precision, "answer": answer, "question_type": qtype, "answer_type": atype,
            "metadata": _vista_meta(category, task), "query": query}


# All published columns; rows chosen where the official scoring and our verifiers differ.
MATHVISTA_ROWS = [
    _vista("1", "Find the angle.", "145°", choices=["120°", "145°", "160°"], qtype="multi_choice", atype="text"),
    _vista("2", "How long is the side? (Unit: cm)", "2.5", atype="float", precision=1.0, unit="cm"),
    _vista("3", "How many bars?", "4", category="general-vqa", task="figure question answering"),
    _vista("4", "What is the ratio?", "1.33", atype="float", precision=2.0, category="general-vqa",
           task="figure question answering"),
    _vista("5", "What is the angle ABC?", "70°", choices=["60°", "70°", "80°"], qtype="multi_choice", atype="text"),
    _vista("6", "What is the population?", "9335", category="general-vqa", task="textbook question answering"),
    _vista("7", "List the x-values.", "[1, 2, 3]", atype="list"),
    _vista("8", "Which number is the smallest?", "3", choices=["3", "10", "100"], qtype="multi_choice", atype="text"),
]


def write_mathvista(root: Path) -> Path:
    return write_parquet(root / "mathvista" / "data" / "testmini-00000-of-00001-725687bf7a18d64b.parquet",
                         MATHVISTA_ROWS)


def write_geo3k(root: Path) -> Path:
    rows = [  # the current card's columns: id, choices and ground_truth beside images/problem/answer
        {"images": [{"bytes": png_bytes("green"), "path": None}], "problem": "<image>Find x.",
         "answer": "2 \\sqrt { 221 }", "id": 0, "choices": ["10", "2 \\sqrt { 221 }", "30", "40"],
         "ground_truth": "B"},
        {"images": [{"bytes": png_bytes("white"), "path": None}], "problem": "<image>Find y.", "answer": "60",
         "id": 1, "choices": ["30", "45", "60", "90"], "ground_truth": "C"},
    ]
    return write_parquet(root / "geo3k" / "data" / "test-00000-of-00001.parquet", rows)


MATHVERSE_VERSIONS = ["Text Dominant", "Text Lite", "Vision Intensive", "Vision Dominant", "Vision Only"]


def _verse(sample: int, problem: int, version: str, answer: str, qtype: str, question: str) -> dict:
    meta = {"split": "testmini", "source": "GeoQA", "subject": "Plane Geometry", "subfield": "Angle"}
    image = {"bytes": png_bytes(), "path": f"images_version_1-4/image_{problem}.png"}
    suffix = ("Please first conduct reasoning, and then answer the question and provide the correct option "
              "letter, e.g., A, B, C, D, at the end." if qtype == "multi-choice" else
              "Please first conduct reasoning, and then answer the question and provide the final value, e.g., "
              "1, 2.5, 300, at the end.")
    return {"sample_index": str(sample), "problem_index": str(problem), "problem_version": version,
            "question": question, "image": image, "answer": answer, "question_type": qtype, "metadata": meta,
            "query_wo": f"{question}", "query_cot": f"{suffix}\nQuestion: {question}" if question else
            "According to the question shown in the image, please first conduct reasoning, and then answer.",
            "question_for_eval": question or "see image"}


_MC = "As shown in the figure, AB is parallel to CD, find the angle.\nChoices:\nA:40°\nB:50°\nC:60°\nD:70°"
# Problem 1 (multiple choice) in all five versions, problem 2 (free form) in two; sample_index is unique.
MATHVERSE_ROWS = [
    *[_verse(i + 1, 1, v, "D", "multi-choice", "" if v == "Vision Only" else _MC)
      for i, v in enumerate(MATHVERSE_VERSIONS)],
    _verse(6, 2, "Text Dominant", "3", "free-form", "The radius is 6. Find half of it."),
    _verse(7, 2, "Vision Only", "3", "free-form", ""),
]


def write_mathverse(root: Path) -> Path:
    return write_parquet(root / "mathverse" / "testmini.parquet", MATHVERSE_ROWS)


def _vision(pid: str, question: str, answer: str, options=(), level=1, subject="metric geometry - length"):
    return {"id": pid, "question": question, "options": list(options), "image": f"images/{pid}.jpg",
            "decoded_image": {"bytes": png_bytes(), "path": f"images/{pid}.jpg"}, "answer": answer,
            "solution": None, "level": level, "subject": subject}


MATHVISION_ROWS = [
    _vision("1", "Which shape is next? <image1>", "C", ["A", "B", "C", "D", "E"], subject="logic"),
    _vision("17", "How many dots? <image1>", "12", level=2, subject="counting"),
    _vision("21", "What is the circumference? <image1>", "B",
            ["$\\pi$", "$2 \\pi$", "$3 \\pi$", "$4 \\pi$", "$5 \\pi$"], subject="metric geometry - length"),
    _vision("33", "Estimate pi. <image1>", "3.14", level=3, subject="arithmetic"),
    _vision("40", "What fraction is shaded? <image1>", "\\frac{1}{2}", level=2, subject="arithmetic"),
    _vision("52", "Give the coordinates of P. <image1>", "(3,4)", level=4, subject="analytic geometry"),
    _vision("60", "How long is AB? <image1>", "7", level=2),
    _vision("77", "Which is the odd one out? <image1>", "E", ["A", "B", "C", "D", "E"], subject="logic"),
]


def write_mathvision(root: Path) -> Path:
    return write_parquet(root / "mathvision" / "data" / "testmini-00000-of-00001-f8ff70fcb2f29b1d.parquet",
                         MATHVISION_ROWS)


def _we(problem_id: str, key: str, answer: str, number: int) -> dict:
    steps = key.split("steps")[0]
    return {"ID": problem_id, "split": "testmini", "knowledge concept": "Area of Squares",
            "question": f"Question {problem_id} part {key}: what is the area?",
            "option": "A. 3 cm²;B. 4 cm²;C. 5 cm²;D. 6 cm²; E. No correct answer", "answer": answer,
            "image_path": {"bytes": png_bytes(), "path": f"{steps}steps/image/{number}-{key.split('_')[1]}.png"},
            "key": key, "question number": number,
            "knowledge concept description": "Area of Squares:\n1. The area of a square is side x side."}


# Three 2-step problems (ID 2steps_1..3: keys 2steps_1, 2steps_2, 2steps_multi) and two 3-step problems
# (3steps_1..2: keys 3steps_1..3, 3steps_multi), ordered by key as in the published file.
WEMATH_GOLD = {
    "2steps_1": {"1": "B", "2": "A", "multi": "C"},
    "2steps_2": {"1": "A", "2": "D", "multi": "B"},
    "2steps_3": {"1": "C", "2": "C", "multi": "A"},
    "3steps_1": {"1": "A", "2": "B", "3": "C", "multi": "D"},
    "3steps_2": {"1": "B", "2": "A", "3": "E", "multi": "A"},
}
WEMATH_ROWS = [
    _we(pid, f"{pid.split('_')[0]}_{part}", WEMATH_GOLD[pid][part], int(pid.split("_")[1]))
    for steps in ("2steps", "3steps") for part in ("1", "2", "3", "multi")
    for pid in WEMATH_GOLD if pid.startswith(steps) and part in WEMATH_GOLD[pid]
]


def write_wemath(root: Path) -> Path:
    return write_parquet(root / "wemath" / "data" / "testmini-00000-of-00001-adbfe22dcd3558e6.parquet", WEMATH_ROWS)


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
