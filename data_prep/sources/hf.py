"""Hugging Face datasets: a ``save_to_disk`` folder, parquet/arrow/jsonl/json files, or a hub id.

Rows are read as plain Python values through Arrow, so image columns arrive undecoded as
``{"bytes", "path"}`` dicts and go through data_prep's own safe decoding. Local files are read in
batches without writing to the datasets cache; only hub ids go through ``datasets.load_dataset``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Iterator
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
    mapped,
    read_json_lines,
)

_EXTENSIONS = (".parquet", ".arrow", ".jsonl", ".json")
_BATCH = 256
Row = tuple[dict[str, Any], Any]  # (loc, row dict or Reject)


def add_hf_arguments(parser: argparse.ArgumentParser, what: str = "a datasets dataset") -> None:
    """``--input``, ``--hf-split``, ``--config``, ``--image-root``, ``--cache-dir``."""
    parser.add_argument("--input", required=True,
                        help=f"{what}: a save_to_disk folder, a folder of parquet/arrow/jsonl/json files "
                             "(files are picked by split name), one such file, or a hub id (needs network or cache)")
    parser.add_argument("--hf-split", help="split to read from the dataset (default: the --split name)")
    parser.add_argument("--config", help="dataset config name (hub ids only)")
    parser.add_argument("--image-root", help="directory for image columns that hold paths "
                                             "(default: the dataset folder or the file's folder)")
    parser.add_argument("--cache-dir", help="datasets cache directory for hub ids (default: the HF cache)")


def open_rows(args: argparse.Namespace) -> tuple[Iterator[Row], Path | None, int | None]:
    """Rows of the requested split, the default image root, and the row count when known."""
    hf_split = args.hf_split or args.split
    path = Path(args.input).expanduser()
    root = existing_dir(args.image_root) if args.image_root else None
    if path.is_file():
        return _file_rows([path]), root or path.parent, None
    if path.is_dir():
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            return _dataset_rows(_load_from_disk(path, hf_split)), root or path, None
        return _file_rows(_split_files(path, hf_split)), root or path, None
    if args.input.count("/") != 1 or args.input.endswith(_EXTENSIONS) or args.input.startswith((".", "/", "~")):
        raise DataPrepError(f"input not found: {args.input}")
    return _dataset_rows(_load_hub(args.input, args.config, hf_split, args.cache_dir)), root, None


def _load_from_disk(path: Path, split: str) -> Any:
    import datasets

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataPrepError(f"{path} has splits {', '.join(loaded)}; pick one with --hf-split")
        return loaded[split]
    return loaded


def _load_hub(name: str, config: str | None, split: str, cache_dir: str | None) -> Any:
    """One probe of the hub, then ``datasets.load_dataset``; failures are one line with the hint."""
    from mhpo_vl.errors import UserError
    from mhpo_vl.hub import load_hub_dataset

    try:
        return load_hub_dataset(name, config, split, cache_dir=cache_dir,
                                hint="without network, pass a local folder or file with --input")
    except UserError as exc:
        raise DataPrepError(str(exc)) from None


def _split_files(folder: Path, split: str) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix in _EXTENSIONS and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise DataPrepError(f"{folder}: no {'/'.join(_EXTENSIONS)} files")
    pattern = re.compile(rf"(^|[/_.-]){re.escape(split)}([/_.-]|$)")
    chosen = [p for p in files if pattern.search(p.relative_to(folder).as_posix())]
    if not chosen:
        names = ", ".join(p.relative_to(folder).as_posix() for p in files[:8])
        raise DataPrepError(f"{folder}: no file for split {split!r} among {names}; use --hf-split or a file path")
    return chosen


def _file_rows(paths: list[Path]) -> Iterator[Row]:
    index = 0
    for path in paths:
        for row in _read_file(path):
            yield ({"index": index} if len(paths) == 1 else {"file": path.name, "index": index}), row
            index += 1


def _read_file(path: Path) -> Iterator[Any]:
    try:
        yield from _read_file_rows(path)
    except (DataPrepError, Reject):
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow/json errors on a damaged file stop the run cleanly
        raise DataPrepError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None


def _read_file_rows(path: Path) -> Iterator[Any]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH):
            yield from batch.to_pylist()
    elif path.suffix == ".arrow":
        yield from _arrow_rows(path)
    elif path.suffix == ".jsonl":
        for _, row in read_json_lines(path):
            yield row
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            for _, row in read_json_lines(path):  # many ".json" files are really JSON lines
                yield row
            return
        yield from (data.get("data", [data]) if isinstance(data, dict) else data)


def _arrow_rows(path: Path) -> Iterator[Any]:
    import pyarrow as pa

    try:
        reader: Any = pa.ipc.open_stream(pa.memory_map(str(path)))
        batches = iter(reader)
    except pa.ArrowInvalid:
        reader = pa.ipc.open_file(pa.memory_map(str(path)))
        batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
    for batch in batches:
        yield from batch.to_pylist()


def _dataset_rows(dataset: Any) -> Iterator[Row]:
    index = 0
    for table in dataset.with_format("arrow").iter(batch_size=_BATCH):
        for row in table.to_pylist():
            yield {"index": index}, row
            index += 1


def adapter_candidates(rows: Iterator[Row], adapter: Callable[[dict[str, Any]], dict[str, Any]],
                       id_prefix: str) -> Iterator[Candidate]:
    """Apply a row -> fields adapter; a Reject from reading or adapting becomes a rejected Candidate."""
    for loc, row in rows:
        default_id = f"{id_prefix}-{loc['index']}"
        if isinstance(row, Reject):
            yield rejected(loc, row, default_id)
            continue
        try:
            if not isinstance(row, dict):
                raise Reject("bad_record", f"expected an object, got {type(row).__name__}")
            yield Candidate(loc, fields=adapter(row), default_id=default_id)
        except Reject as rej:
            yield rejected(loc, rej, default_id, row)


def _hf_args(parser: argparse.ArgumentParser) -> None:
    add_hf_arguments(parser)
    add_column_arguments(parser)


def _hf_open(args: argparse.Namespace) -> SourceData:
    rows, root, total = open_rows(args)
    cmap = column_map(args)
    prefix = args.hf_split or args.split
    return SourceData((mapped(loc, row, cmap, f"{prefix}-{loc['index']}") for loc, row in rows), root, total)


SOURCES = [Source("hf", "a Hugging Face dataset (local folder/files or hub id) with column mapping",
                  _hf_args, _hf_open)]
