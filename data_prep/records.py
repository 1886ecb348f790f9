"""The prepared record: field mapping from raw rows, validation and answer-type inference.

A prepared record (DESIGN.md section 4)::

    {"id": str, "images": ["images/<sha>.png", ...], "prompt": str, "answer": str,
     "answer_type": "math" | "choice" | "numeric" | "bbox" | "text", "choices"?: [str, ...],
     "source": str, "split": str, "meta"?: {...}}

``answer`` is always a string (a bbox is written as JSON, ``"[x1, y1, x2, y2]"``). For
``answer_type == "choice"`` the answer is the *text* of one of ``choices``; a letter answer
("B") is mapped to its choice text and kept in ``meta.answer_letter``. ``<image>`` markers are
removed from prompts: the collator places the images itself.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from data_prep.errors import Reject

ANSWER_TYPES = ("math", "choice", "numeric", "bbox", "text")
_IMAGE_MARKER = re.compile(r"<image>\s*")
_NUMBER = re.compile(r"^[-+]?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?([eE][-+]?\d+)?$")
_MATHY = re.compile(r"[\\^_{}=+*/√π]|\d")


@dataclass
class Candidate:
    """One input unit (a line, a row, a generated sample) on its way to the output or the rejects.

    loc: where it came from, e.g. {"line": 7} or {"index": 12}; copied into its reject line.
    fields: raw record fields (names of the prepared record; ``images`` holds image inputs).
    reject: set when the source already knows the unit is bad (e.g. malformed JSON).
    raw_id: the record's id when known before parsing (e.g. read from a malformed JSON line).
    """

    loc: dict[str, Any]
    fields: dict[str, Any] | None = None
    reject: Reject | None = None
    default_id: str = ""
    raw_id: str | None = None


@dataclass
class ColumnMap:
    """Which raw keys hold which record field; the first key present (and not null) wins."""

    prompt: Sequence[str] = ("prompt", "question", "problem", "query")
    answer: Sequence[str] = ("answer",)
    images: Sequence[str] = ("images", "image", "file_name", "image_path")
    id: Sequence[str] = ("id",)
    choices: Sequence[str] = ("choices",)
    answer_type: Sequence[str] = ("answer_type",)
    keep_extra: bool = True
    _extra_exclude: tuple[str, ...] = field(default=("meta", "source", "split"), repr=False)

    def map_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """Raw row -> record fields; unknown JSON-serialisable keys go to ``meta``."""
        if not isinstance(row, dict):
            raise Reject("bad_record", f"expected a JSON object, got {type(row).__name__}")
        out: dict[str, Any] = {}
        used: set[str] = set()
        for name in ("prompt", "answer", "images", "id", "choices", "answer_type"):
            for key in getattr(self, name):
                if row.get(key) is not None:
                    out[name] = row[key]
                    used.add(key)
                    break
        images = out.get("images")
        out["images"] = [] if images is None else images if isinstance(images, list) else [images]
        meta = dict(row["meta"]) if isinstance(row.get("meta"), dict) else {}
        if self.keep_extra:
            for key, value in row.items():
                if key not in used and key not in self._extra_exclude and _jsonable(value):
                    meta.setdefault(key, value)
        if meta:
            out["meta"] = meta
        if isinstance(row.get("source"), str):
            out["source"] = row["source"]
        return out


def raw_id_of(row: Any, key: str = "id") -> str | None:
    """The id of a raw row as given (for reject lines of rows that fail before validation), else None."""
    value = row.get(key) if isinstance(row, dict) else None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value)


def rejected(loc: dict[str, Any], reject: Reject, default_id: str, row: Any = None) -> Candidate:
    """A Candidate for a row already known to be bad, carrying the row's id when it has one."""
    return Candidate(loc, reject=reject, default_id=default_id, raw_id=reject.raw_id or raw_id_of(row))


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _text(value: Any, name: str) -> str:
    """A string field; ints and finite floats are accepted and written as ``3`` or ``0.25``."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    raise Reject("bad_record", f"{name} must be a string, got {type(value).__name__} {value!r:.40}")


def clean_prompt(prompt: str) -> str:
    """Remove ``<image>`` markers and surrounding whitespace."""
    return _IMAGE_MARKER.sub("", prompt).strip()


def is_number(text: str) -> bool:
    """True for plain decimal numbers such as ``-3``, ``1,234.5``, ``2e3``."""
    text = text.strip()
    return bool(text) and bool(_NUMBER.match(text)) and any(ch.isdigit() for ch in text)


def infer_answer_type(answer: Any, choices: list[str] | None) -> str:
    """choices -> choice; 4 numbers -> bbox; a plain number -> numeric; LaTeX/digits -> math; else text."""
    if choices:
        return "choice"
    if isinstance(answer, list):
        return "bbox"
    text = str(answer)
    if is_number(text):
        return "numeric"
    return "math" if _MATHY.search(text) else "text"


def _bbox(answer: Any) -> str:
    if not (isinstance(answer, list) and len(answer) == 4 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in answer)):
        raise Reject("bad_record", f"a bbox answer must be 4 numbers, got {answer!r}")
    return json.dumps(answer)


def normalise_record(fields: dict[str, Any], *, split: str, source: str, default_id: str) -> dict[str, Any]:
    """Validate mapped fields and build the prepared record (without ``images``, set by the pipeline)."""
    if "prompt" not in fields:
        raise Reject("missing_prompt", "no prompt, question or problem field")
    prompt = clean_prompt(_text(fields["prompt"], "prompt"))
    if not prompt:
        raise Reject("empty_prompt", "the prompt is empty")
    if "answer" not in fields:
        raise Reject("missing_answer", "no answer field")
    raw_answer = fields["answer"]
    choices = _choices(fields.get("choices"))
    answer_type = fields.get("answer_type")
    if answer_type is None:
        answer_type = infer_answer_type(raw_answer, choices)
    if answer_type not in ANSWER_TYPES:
        raise Reject("bad_record", f"answer_type {answer_type!r} is not one of {', '.join(ANSWER_TYPES)}")
    answer = _bbox(raw_answer) if isinstance(raw_answer, list) else _text(raw_answer, "answer").strip()
    if not answer:
        raise Reject("empty_answer", "the answer is empty")
    record: dict[str, Any] = {"id": _record_id(fields.get("id"), default_id), "images": [], "prompt": prompt,
                              "answer": answer, "answer_type": answer_type}
    meta = dict(fields.get("meta") or {})
    if answer_type == "choice":
        if not choices:
            raise Reject("bad_record", "answer_type is choice but there are no choices")
        record["answer"] = _choice_answer(answer, choices, meta)
    if choices:
        record["choices"] = choices
    record["source"] = fields.get("source") or source
    record["split"] = split
    if meta:
        record["meta"] = meta
    return record


def _record_id(value: Any, default_id: str) -> str:
    if value is None or value == "":
        return default_id
    return _text(value, "id").strip() or default_id


def _choices(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value:
        raise Reject("bad_record", f"choices must be a non-empty list, got {value!r}")
    return [_text(choice, "choice").strip() for choice in value]


def _choice_answer(answer: str, choices: list[str], meta: dict[str, Any]) -> str:
    if answer in choices:
        return answer
    letter = answer.strip("() .").upper()
    if len(letter) == 1 and "A" <= letter <= "Z" and ord(letter) - 65 < len(choices):
        meta["answer_letter"] = letter
        return choices[ord(letter) - 65]
    raise Reject("answer_not_in_choices", f"answer {answer!r} is not one of {choices}")
