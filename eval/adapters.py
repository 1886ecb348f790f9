"""Per-benchmark row hooks, for what a declarative field mapping cannot say.

A benchmark YAML names one with ``adapter: NAME``. Each hook gets the raw published row and the record
built from the field mapping, and returns the finished record (prepared-record schema, DESIGN.md
section 4). A hook raises ``ValueError`` for a row it cannot use; the loader adds the file and row.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Adapter = Callable[[dict, dict], dict]

_BARE_NUMBER = re.compile(r"-?[\d,]*\.?\d+")
_OPTION = re.compile(r"(?:^|;)\s*([A-H])[.:：]\s*")


def gsm8k(row: dict, record: dict) -> dict:
    """GSM8K: the gold answer is the number after the last ``####``, commas removed (a copy whose
    answers are already bare numbers is accepted as is).

    >>> gsm8k({}, {"answer": "5 + 7 = <<5+7=12>>12\\n#### 1,012"})["answer"]
    '1012'
    """
    text = str(record["answer"])
    if "####" not in text:
        if _BARE_NUMBER.fullmatch(text.strip()):
            record["answer"] = text.strip().replace(",", "")
            return record
        raise ValueError("GSM8K answer has no '#### <number>' line")
    final = text.rsplit("####", 1)[1].strip().replace(",", "").rstrip(".")
    if not final:
        raise ValueError("GSM8K answer is empty after '####'")
    record["answer"] = final
    return record


def mathvista(row: dict, record: dict) -> dict:
    """MathVista: ``multi_choice`` rows -> choice among ``choices`` (gold is the option text);
    ``free_form`` integer/float rows -> numeric (float rows keep ``precision``), list/text -> math.
    ``unit`` is kept so a trailing unit in the response does not count against it."""
    qtype = row.get("question_type")
    if qtype == "multi_choice":
        if not row.get("choices"):
            raise ValueError("multi_choice row without 'choices'")
        record["answer_type"] = "choice"
        record["choices"] = [str(c) for c in row["choices"]]
    elif qtype == "free_form":
        record["answer_type"] = "numeric" if row.get("answer_type") in ("integer", "float") else "math"
        record.pop("choices", None)
    else:
        raise ValueError(f"unknown question_type {qtype!r} (expected multi_choice or free_form)")
    meta = record.setdefault("meta", {})
    if row.get("precision") is not None and row.get("answer_type") == "float":
        meta["precision"] = int(row["precision"])
    if row.get("unit"):
        meta["unit"] = str(row["unit"])
    meta["protocol"] = {"question_type": qtype, "answer_type": row.get("answer_type"), "answer": str(row["answer"]),
                        "choices": [str(c) for c in row.get("choices") or []],
                        "precision": int(row["precision"]) if row.get("precision") is not None else None,
                        "skills": [str(k) for k in (row.get("metadata") or {}).get("skills") or []]}
    return record


def mathverse(row: dict, record: dict) -> dict:
    """MathVerse: ``multi-choice`` rows have a letter gold with the options inside the question
    (kept for the protocol, parsed from its ``Choices:`` block)."""
    from eval.protocols.mathverse import parse_options

    qtype = row.get("question_type")
    if qtype == "multi-choice":
        record["answer_type"] = "choice"
        record["answer"] = record["answer"].strip().rstrip(".:").strip()
    elif qtype != "free-form":
        raise ValueError(f"unknown question_type {qtype!r} (expected multi-choice or free-form)")
    record.setdefault("meta", {})["protocol"] = {
        "question_type": qtype, "answer": str(row["answer"]).strip(),
        "options": parse_options(str(row.get("question") or "")) if qtype == "multi-choice" else {}}
    return record


def mathvision(row: dict, record: dict) -> dict:
    """MATH-Vision: rows with ``options`` are multiple choice (gold letter A-E), else free form."""
    options = [str(o) for o in (row.get("options") or [])]
    if options:
        record["answer_type"] = "choice"
        record["choices"] = options
    else:
        record["answer_type"] = "math"
        record.pop("choices", None)
    record.setdefault("meta", {})["protocol"] = {"answer": str(row["answer"]), "options": options}
    return record


def parse_option_string(text: str) -> list[str]:
    """We-Math's one-string options -> a list of option texts.

    >>> parse_option_string("A. 3 cm;B. 4 cm; C. 5 cm;D. No correct answer")
    ['3 cm', '4 cm', '5 cm', 'No correct answer']
    """
    parts = _OPTION.split(text.strip())
    # split() alternates [before, letter, text, letter, text, ...]
    options = [parts[i + 1].strip().rstrip(";").strip() for i in range(1, len(parts) - 1, 2)]
    if not options:
        raise ValueError(f"cannot parse options {text!r} (expected 'A. ...;B. ...')")
    return options


def wemath(row: dict, record: dict) -> dict:
    """We-Math: multiple choice; ``option`` is one string ``"A. ...;B. ..."``, gold is a letter.

    ``ID`` is shared by a problem's sub-problems and its composite question; ``key`` says which row is
    which (``2steps_1``, ``2steps_2``, ``2steps_multi``, ``3steps_1`` ...). The row id is ``ID/key``.

    >>> wemath({"ID": "2steps_1", "key": "2steps_multi", "option": "A. 1;B. 2", "answer": "B"},
    ...        {"id": "2steps_1", "answer": "B"})["id"]
    '2steps_1/2steps_multi'
    """
    for column in ("ID", "key"):
        if not row.get(column):
            raise ValueError(f"missing column {column!r} (We-Math rows need ID and key)")
    record["id"] = f"{row['ID']}/{row['key']}"
    record["answer_type"] = "choice"
    record["choices"] = parse_option_string(str(row.get("option") or ""))
    record.setdefault("meta", {})["protocol"] = {"ID": str(row["ID"]), "key": str(row["key"]),
                                                 "answer": str(row["answer"]).strip()}
    return record


ADAPTERS: dict[str, Adapter] = {
    "gsm8k": gsm8k,
    "mathvista": mathvista,
    "mathverse": mathverse,
    "mathvision": mathvision,
    "wemath": wemath,
}


def get_adapter(name: str) -> Adapter:
    """The hook registered under ``name``."""
    return ADAPTERS[name]

