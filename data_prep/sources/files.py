"""Local-file sources: JSONL records, LLaVA conversation JSON, and an image folder with a CSV."""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep.errors import DataPrepError, Reject
from data_prep.records import Candidate, rejected
from data_prep.sources.common import (
    Source,
    SourceData,
    add_column_arguments,
    column_map,
    existing_dir,
    existing_file,
    mapped,
    read_json_lines,
)


def _add_input(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--input", required=True, help=help_text)
    parser.add_argument("--image-root",
                        help="directory that relative image paths are resolved in; paths may not leave it "
                             "(default: the input file's directory)")


def _image_root(args: argparse.Namespace, input_path: Path) -> Path:
    return existing_dir(args.image_root) if args.image_root else input_path.parent


# ---- jsonl ---------------------------------------------------------------------------------------

def _jsonl_args(parser: argparse.ArgumentParser) -> None:
    _add_input(parser, "JSONL file, one object per line with prompt/question/problem, answer, image or "
                       "images, and optional id, answer_type, choices, meta")
    add_column_arguments(parser)


def _jsonl_open(args: argparse.Namespace) -> SourceData:
    path = existing_file(args.input)
    cmap = column_map(args)

    def candidates() -> Iterator[Candidate]:
        for number, row in read_json_lines(path):
            yield mapped({"line": number}, row, cmap, f"{path.stem}-{number}")

    return SourceData(candidates(), _image_root(args, path))


# ---- llava ---------------------------------------------------------------------------------------

def _llava_args(parser: argparse.ArgumentParser) -> None:
    _add_input(parser, "LLaVA-style .json (a list) or .jsonl of {id, image, conversations: "
                       "[{from: human, value}, {from: gpt, value}, ...]}; the first human/gpt turn is used")


def llava_fields(item: Any) -> dict[str, Any]:
    """First human question and the gpt reply after it; later turns are counted in meta.turns."""
    if not isinstance(item, dict):
        raise Reject("bad_record", f"expected an object, got {type(item).__name__}")
    turns = item.get("conversations")
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise Reject("bad_record", "conversations must be a list of {from, value} objects")
    fields: dict[str, Any] = {"id": item.get("id"), "meta": {"turns": len(turns)}}
    image = item.get("image", item.get("images"))
    fields["images"] = [] if image is None else image if isinstance(image, list) else [image]
    for i, turn in enumerate(turns):
        if turn.get("from") in ("human", "user"):
            fields["prompt"] = turn.get("value")
            if i + 1 < len(turns) and turns[i + 1].get("from") in ("gpt", "assistant"):
                fields["answer"] = turns[i + 1].get("value")
            break
    return {key: value for key, value in fields.items() if value is not None}


def _llava_open(args: argparse.Namespace) -> SourceData:
    path = existing_file(args.input)

    def candidates() -> Iterator[Candidate]:
        if path.suffix == ".jsonl":
            rows: Iterator[tuple[dict[str, Any], Any]] = (({"line": n}, row) for n, row in read_json_lines(path))
        else:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise DataPrepError(f"{path}: not valid JSON ({exc})") from None
            if not isinstance(data, list):
                raise DataPrepError(f"{path}: expected a JSON list of conversations")
            rows = (({"index": i}, row) for i, row in enumerate(data))
        for loc, row in rows:
            default_id = f"{path.stem}-{next(iter(loc.values()))}"
            if isinstance(row, Reject):
                yield rejected(loc, row, default_id)
                continue
            try:
                yield Candidate(loc, fields=llava_fields(row), default_id=default_id)
            except Reject as rej:
                yield rejected(loc, rej, default_id, row)

    return SourceData(candidates(), _image_root(args, path))


# ---- folder + CSV --------------------------------------------------------------------------------

_CSV_NAMES = ("metadata.csv", "questions.csv", "data.csv")


def _folder_args(parser: argparse.ArgumentParser) -> None:
    _add_input(parser, "a CSV file (header row: file_name or image, question or prompt, answer, optional id, "
                       "answer_type, choices as a JSON list or 'a|b|c'), or a folder holding "
                       + " / ".join(_CSV_NAMES))
    add_column_arguments(parser)


def _csv_path(value: str) -> Path:
    path = Path(value).expanduser()
    if path.is_dir():
        for name in _CSV_NAMES:
            if (path / name).is_file():
                return path / name
        raise DataPrepError(f"{value}: no {' / '.join(_CSV_NAMES)} in this folder")
    return existing_file(value)


def _parse_choices(text: str) -> Any:
    text = text.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            raise Reject("bad_record", f"choices {text!r} is not a JSON list") from None
    return [part.strip() for part in text.split("|")]


def _folder_open(args: argparse.Namespace) -> SourceData:
    path = _csv_path(args.input)
    cmap = column_map(args)
    keep_empty = set(cmap.prompt) | set(cmap.answer)

    def candidates() -> Iterator[Candidate]:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                raise DataPrepError(f"{path}: empty CSV (a header row is needed)")
            header = [name.strip() for name in header]
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise DataPrepError(f"{path}, line {reader.line_num}: {exc}") from None
                loc = {"line": reader.line_num}
                default_id = f"{path.stem}-{reader.line_num}"
                yield _csv_candidate(loc, row, header, cmap, keep_empty, default_id)

    return SourceData(candidates(), _image_root(args, path))


def _csv_candidate(loc: dict[str, Any], row: list[str], header: list[str], cmap: Any, keep_empty: set[str],
                   default_id: str) -> Candidate:
    if not any(cell.strip() for cell in row):
        return rejected(loc, Reject("blank_line", f"line {loc['line']} is empty"), default_id)
    if len(row) != len(header):
        reject = Reject("bad_record", f"line {loc['line']}: {len(row)} fields, the header has {len(header)}")
        return rejected(loc, reject, default_id)
    values = {key: value for key, value in zip(header, row) if value != "" or key in keep_empty}
    try:
        for key in cmap.choices:
            if key in values:
                values[key] = _parse_choices(values[key])
    except Reject as rej:
        return rejected(loc, rej, default_id, values)
    return mapped(loc, values, cmap, default_id)


SOURCES = [
    Source("jsonl", "JSONL records with image paths relative to --image-root", _jsonl_args, _jsonl_open),
    Source("llava", "LLaVA-style conversation JSON/JSONL", _llava_args, _llava_open),
    Source("folder", "an image folder plus a CSV of questions and answers", _folder_args, _folder_open),
]
