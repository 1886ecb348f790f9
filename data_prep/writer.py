"""Streaming output of one split: ``<split>.jsonl|parquet``, ``rejects.jsonl`` and ``summary.json``.

Several splits share one output directory without clobbering each other:
- ``<split>.jsonl`` (or ``.parquet``) belongs to one split; a rerun of that split replaces it.
- ``rejects.jsonl`` holds the rejects of all splits, each line with a ``"split"`` field; a run
  replaces only the lines of its own split.
- ``summary.json`` maps split name -> counts (``in``, ``out``, ``rejected``, ``rejected_by_reason``...).
Everything is written to temporary files and moved into place at ``close()``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

FORMATS = ("jsonl", "parquet")
_PARQUET_BATCH = 1000


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class SplitWriter:
    """Writes accepted records and rejects as they come (constant memory)."""

    def __init__(self, out_dir: Path, split: str, fmt: str = "jsonl") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir, self.split, self.fmt = out_dir, split, fmt
        self.path = out_dir / f"{split}.{fmt}"
        self._tmp = out_dir / f".{split}.{fmt}.{os.getpid()}.tmp"
        self._rejects_tmp = out_dir / f".rejects.{split}.{os.getpid()}.tmp"
        self._records = self._tmp.open("w", encoding="utf-8") if fmt == "jsonl" else None
        self._rejects = self._rejects_tmp.open("w", encoding="utf-8")
        self._batch: list[dict[str, Any]] = []
        self._parquet: Any = None
        self.n_out = 0
        self.reasons: Counter[str] = Counter()

    def write(self, record: dict[str, Any]) -> None:
        self.n_out += 1
        if self._records is not None:
            self._records.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        self._batch.append(record)
        if len(self._batch) >= _PARQUET_BATCH:
            self._flush_parquet()

    def reject(self, loc: dict[str, Any], reason: str, detail: str, record_id: str | None = None) -> None:
        self.reasons[reason] += 1
        line: dict[str, Any] = {"split": self.split, **loc}
        if record_id is not None:
            line["id"] = record_id
        line.update(reason=reason, detail=detail)
        self._rejects.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")

    def _flush_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._batch:
            return
        rows = [{**rec, "choices": rec.get("choices"), "meta": json.dumps(rec["meta"]) if "meta" in rec else None}
                for rec in self._batch]
        table = pa.Table.from_pylist(rows, schema=parquet_schema())
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._tmp, parquet_schema())
        self._parquet.write_table(table)
        self._batch = []

    def close(self, summary: dict[str, Any]) -> None:
        """Move outputs into place, merge rejects with other splits', update ``summary.json``."""
        if self._records is not None:
            self._records.close()
        else:
            self._flush_parquet()
            if self._parquet is None:
                import pyarrow.parquet as pq

                pq.write_table(parquet_schema().empty_table(), self._tmp)
            else:
                self._parquet.close()
        os.replace(self._tmp, self.path)
        other = self.out_dir / f"{self.split}.{'parquet' if self.fmt == 'jsonl' else 'jsonl'}"
        other.unlink(missing_ok=True)  # a stale file of the other format would shadow this run
        self._rejects.close()
        self._merge_rejects()
        self._update_summary(summary)

    def abort(self) -> None:
        """Remove temporary files after a failed run (the previous outputs stay untouched)."""
        for handle in (self._records, self._rejects):
            if handle is not None:
                handle.close()
        if self._parquet is not None:
            self._parquet.close()
        self._tmp.unlink(missing_ok=True)
        self._rejects_tmp.unlink(missing_ok=True)

    def _merge_rejects(self) -> None:
        final = self.out_dir / "rejects.jsonl"
        merged = self.out_dir / f".rejects.jsonl.{os.getpid()}.tmp"
        with merged.open("w", encoding="utf-8") as out:
            if final.exists():
                with final.open(encoding="utf-8") as old:
                    for line in old:
                        if _split_of(line) != self.split:
                            out.write(line)
            with self._rejects_tmp.open(encoding="utf-8") as new:
                for line in new:
                    out.write(line)
        os.replace(merged, final)
        self._rejects_tmp.unlink()

    def _update_summary(self, summary: dict[str, Any]) -> None:
        path = self.out_dir / "summary.json"
        data: dict[str, Any] = {}
        if path.exists():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                data = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                data = {}
        data[self.split] = summary
        _atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _split_of(line: str) -> str | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value.get("split") if isinstance(value, dict) else None


def parquet_schema() -> Any:
    """Parquet columns of a prepared split; ``meta`` is stored as a JSON string (null when absent)."""
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()), ("images", pa.list_(pa.string())), ("prompt", pa.string()),
        ("answer", pa.string()), ("answer_type", pa.string()), ("choices", pa.list_(pa.string())),
        ("source", pa.string()), ("split", pa.string()), ("meta", pa.string()),
    ])
