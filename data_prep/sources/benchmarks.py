"""Adapters for published benchmarks, by their real column names (see shared/benchmarks.md).

Each adapter maps one dataset row to record fields; loading (local folder/files or hub id) is
shared with the ``hf`` source. Prompts are the dataset's question text; the answer format
instruction (think/answer tags) comes from the training recipe's system prompt.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any

from data_prep.errors import Reject
from data_prep.sources.common import Source, SourceData
from data_prep.sources.hf import adapter_candidates, add_hf_arguments, open_rows

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
_EVAL_SPLITS = ("test", "testmini", "validation", "val", "eval", "dev")


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``), with nested braces; None if absent.

    >>> last_boxed(r"so $x = \boxed{\frac{1}{2}}$.")
    '\\frac{1}{2}'
    """
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, begin = 1, i
    while i < len(text):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin:i].strip()
        i += 1
    return None


def _get(row: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if row.get(key) is not None:
            return row[key]
    return None


def _images(value: Any) -> list[Any]:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def _meta(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: row[key] for key in keys if row.get(key) is not None}


def geo3k(row: dict[str, Any]) -> dict[str, Any]:
    """hiyouga/geometry3k: images (list), problem (with ``<image>``), answer = value of the right choice."""
    return {"id": row.get("id"), "images": _images(row.get("images")), "prompt": row.get("problem"),
            "answer": row.get("answer"), "answer_type": "math", "meta": _meta(row, "choices", "ground_truth")}


def clevr_count(row: dict[str, Any]) -> dict[str, Any]:
    """CLEVR counting (R1-V ``image, problem, solution='<answer> N </answer>'`` or ``images, problem, answer``)."""
    answer = row.get("answer")
    if answer is None and isinstance(row.get("solution"), str):
        match = _ANSWER_TAG.search(row["solution"])
        if match is None:
            raise Reject("missing_answer", "solution has no <answer>...</answer>")
        answer = match.group(1).strip()
    return {"id": row.get("id"), "images": _images(_get(row, "images", "image")),
            "prompt": _get(row, "problem", "question"), "answer": answer, "answer_type": "numeric"}


def mathvista(row: dict[str, Any]) -> dict[str, Any]:
    """AI4Math/MathVista: decoded_image, query (ready prompt), choices, answer (choice text), answer_type."""
    image = row.get("decoded_image") or row.get("image")
    choices = row.get("choices") if row.get("question_type") == "multi_choice" else None
    kind = "choice" if choices else "numeric" if row.get("answer_type") in ("integer", "float") else "text"
    meta = _meta(row, "unit", "precision", "question_type", "metadata")
    if row.get("answer_type") is not None:
        meta["mathvista_answer_type"] = row["answer_type"]
    return {"id": row.get("pid"), "images": _images(image), "prompt": _get(row, "query", "question"),
            "answer": row.get("answer"), "answer_type": kind, "choices": choices, "meta": meta}


def gsm8k(row: dict[str, Any]) -> dict[str, Any]:
    """openai/gsm8k: question; answer = worked solution ending in ``#### <number>`` (commas removed)."""
    solution = row.get("answer")
    if not isinstance(solution, str) or "####" not in solution:
        raise Reject("missing_answer", "the answer has no '#### <number>' line")
    head, _, final = solution.rpartition("####")
    return {"id": row.get("id"), "images": [], "prompt": row.get("question"),
            "answer": final.strip().replace(",", "").rstrip("."), "answer_type": "numeric",
            "meta": {"solution": head.strip()}}


def math_problems(row: dict[str, Any]) -> dict[str, Any]:
    r"""MATH / MATH-500: problem, answer (or the last ``\boxed{}`` of solution), unique_id, subject, level."""
    answer = row.get("answer")
    if answer is None and isinstance(row.get("solution"), str):
        answer = last_boxed(row["solution"])
        if answer is None:
            raise Reject("missing_answer", "no answer column and no \\boxed{} in the solution")
    return {"id": _get(row, "unique_id", "id"), "images": [], "prompt": row.get("problem"), "answer": answer,
            "answer_type": "math", "meta": _meta(row, "subject", "level", "type")}


def _warn_mathvista(args: argparse.Namespace) -> None:
    if args.split not in _EVAL_SPLITS:
        print("data_prep: warning: MathVista's licence (CC BY-SA 4.0 with extra terms) prohibits training on it; "
              f"split {args.split!r} looks like training data. Use it for evaluation only.", file=sys.stderr)


def _benchmark(name: str, help_text: str, adapter: Callable[[dict[str, Any]], dict[str, Any]],
               hf_id: str, before: Callable[[argparse.Namespace], None] | None = None) -> Source:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        add_hf_arguments(parser, f"{help_text} (published as {hf_id})")

    def open_source(args: argparse.Namespace) -> SourceData:
        if before is not None:
            before(args)
        rows, root, total = open_rows(args)
        return SourceData(adapter_candidates(rows, adapter, f"{name}-{args.hf_split or args.split}"), root, total)

    return Source(name, f"{help_text}; columns as in {hf_id}", add_arguments, open_source)


SOURCES = [
    _benchmark("geo3k", "Geometry3K diagrams with math answers", geo3k, "hiyouga/geometry3k"),
    _benchmark("clevr_count", "CLEVR-style object counting", clevr_count, "leonardPKU/clevr_cogen_a_train"),
    _benchmark("mathvista", "MathVista, evaluation only (its licence forbids training)", mathvista,
               "AI4Math/MathVista", before=_warn_mathvista),
    _benchmark("gsm8k", "GSM8K grade-school math (text only)", gsm8k, "openai/gsm8k (config main)"),
    _benchmark("math", "MATH / MATH-500 competition math (text only)", math_problems, "HuggingFaceH4/MATH-500"),
]
