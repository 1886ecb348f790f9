"""Shared pieces of the source adapters: the Source type, JSON-lines reading, column options."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.errors import DataPrepError, Reject
from data_prep.records import Candidate, ColumnMap, rejected

_ID_IN_TEXT = re.compile(rb'"id"\s*:\s*(?:"((?:[^"\\]|\\.)*)"|(-?\d+))')


@dataclass
class SourceData:
    """What a source hands to the pipeline: candidates, where relative image paths live, a count."""

    candidates: Iterable[Candidate]
    image_root: Path | None = None
    total: int | None = None


@dataclass
class Source:
    """A named adapter: CLI options it adds and a function turning parsed options into candidates."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    open: Callable[[argparse.Namespace], SourceData]


def read_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (1-based line number, parsed value or Reject) for every physical line of a JSONL file."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                yield number, Reject("malformed_json", f"line {number}: not UTF-8 ({exc.reason})")
                continue
            if not text.strip():
                yield number, Reject("blank_line", f"line {number} is empty")
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                reject = Reject("malformed_json", f"line {number}: {exc.msg} (column {exc.colno})")
                reject.raw_id = guess_id(raw)
                yield number, reject
            except RecursionError:
                yield number, Reject("malformed_json", f"line {number}: nested too deeply")


def guess_id(raw: bytes) -> str | None:
    """Best-effort ``"id"`` value of a line that is not valid JSON (for its reject line)."""
    match = _ID_IN_TEXT.search(raw)
    if match is None:
        return None
    return (match.group(1) or match.group(2)).decode("utf-8", "replace")


def existing_file(value: str, what: str = "input") -> Path:
    """The path if it is an existing file, else a DataPrepError naming it."""
    path = Path(value).expanduser()
    if not path.exists():
        raise DataPrepError(f"{what} not found: {value}")
    if not path.is_file():
        raise DataPrepError(f"{what} is not a file: {value}")
    return path


def existing_dir(value: str, what: str = "--image-root") -> Path:
    """The path if it is an existing directory, else a DataPrepError naming it."""
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DataPrepError(f"{what} is not a directory: {value}")
    return path


def add_column_arguments(parser: argparse.ArgumentParser) -> None:
    """``--prompt-column`` etc.: which input keys hold the record fields."""
    group = parser.add_argument_group("column mapping (defaults try the usual names)")
    group.add_argument("--prompt-column", help="key of the prompt (default: prompt, question, problem, query)")
    group.add_argument("--answer-column", help="key of the reference answer (default: answer)")
    group.add_argument("--image-column",
                       help="key of the image or list of images (default: images, image, file_name, image_path)")
    group.add_argument("--id-column", help="key of the record id (default: id; missing ids are generated)")
    group.add_argument("--choices-column", help="key of the list of choices (default: choices)")


def column_map(args: argparse.Namespace) -> ColumnMap:
    """A ColumnMap with the CLI overrides applied."""
    cmap = ColumnMap()
    for name, option in (("prompt", "prompt_column"), ("answer", "answer_column"), ("images", "image_column"),
                         ("id", "id_column"), ("choices", "choices_column")):
        value = getattr(args, option, None)
        if value:
            setattr(cmap, name, (value,))
    return cmap


def mapped(loc: dict[str, Any], row: Any, cmap: ColumnMap, default_id: str) -> Candidate:
    """A Candidate from a raw row (or a Reject already found while reading it)."""
    if isinstance(row, Reject):
        return rejected(loc, row, default_id)
    try:
        return Candidate(loc, fields=cmap.map_row(row), default_id=default_id)
    except Reject as rej:
        return rejected(loc, rej, default_id, row)
