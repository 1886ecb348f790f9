"""Read a prepared directory back: which splits it has and their records (JSONL or parquet)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep.errors import DataPrepError

_NOT_SPLITS = {"rejects", "summary"}


def find_splits(out_dir: Path) -> dict[str, Path]:
    """split name -> record file (``<split>.jsonl`` or ``<split>.parquet``)."""
    if not out_dir.is_dir():
        raise DataPrepError(f"not a directory: {out_dir}")
    found = {p.stem: p for p in sorted(out_dir.glob("*.parquet"))}
    found.update({p.stem: p for p in sorted(out_dir.glob("*.jsonl")) if p.stem not in _NOT_SPLITS})
    return found


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """Records of one split file; parquet ``meta`` JSON strings are decoded, null fields dropped."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=512):
            for row in batch.to_pylist():
                if row.get("meta"):
                    row["meta"] = json.loads(row["meta"])
                yield {key: value for key, value in row.items() if value is not None}
        return
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                yield json.loads(line)
            except ValueError as exc:
                raise DataPrepError(f"{path}, line {number}: not a prepared record ({exc})") from None
