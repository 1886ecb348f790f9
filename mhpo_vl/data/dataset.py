"""A dataset over a prepared directory (``<split>.jsonl`` or ``<split>.parquet`` + ``images/``).

Records follow DESIGN.md section 4: ``{"id", "images", "prompt", "answer", "answer_type",
"choices"?, "source", "split", "meta"?}``. Each loaded record also gets ``image_root`` (the directory)
so image paths resolve wherever the dataset lives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from mhpo_vl.errors import UserError
from mhpo_vl.jsonl import iter_jsonl

REQUIRED_FIELDS = ("id", "prompt", "answer")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [{**record, "_line": line_no} for line_no, record in iter_jsonl(path, "; re-run data_prep")]


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    for i, row in enumerate(rows):
        row["_line"] = i + 1
        if isinstance(row.get("meta"), str):
            try:
                row["meta"] = json.loads(row["meta"])
            except json.JSONDecodeError:
                pass
    return rows


def load_records(directory: str | Path, split: str = "train") -> list[dict[str, Any]]:
    """Read and check the records of ``split`` in a prepared directory."""
    root = Path(directory)
    if not root.is_dir():
        raise UserError(f"prepared dataset directory not found: {root}")
    jsonl, parquet = root / f"{split}.jsonl", root / f"{split}.parquet"
    if jsonl.is_file():
        path, records = jsonl, _read_jsonl(jsonl)
    elif parquet.is_file():
        path, records = parquet, _read_parquet(parquet)
    else:
        found = sorted(p.name for p in root.glob("*.jsonl") if p.name != "rejects.jsonl")
        found += sorted(p.name for p in root.glob("*.parquet"))
        raise UserError(f"{root}: no {split}.jsonl or {split}.parquet (found: {', '.join(found) or 'nothing'})")
    for record in records:
        line = record.pop("_line")
        missing = [k for k in REQUIRED_FIELDS if k not in record or record[k] in (None, "")]
        if missing:
            raise UserError(f"{path}:{line}: record is missing {', '.join(missing)}")
        record["id"] = str(record["id"])
        record["images"] = list(record.get("images") or [])
        record.setdefault("answer_type", "math")
        record["image_root"] = str(root)
    return records


class PromptDataset(Dataset):
    """Prepared records of one split, indexable; items are record dicts (see module docstring)."""

    def __init__(self, directory: str | Path, split: str = "train", limit: int = 0) -> None:
        self.directory = Path(directory)
        self.split = split
        self.records = load_records(directory, split)
        if limit:
            self.records = self.records[:limit]
        if not self.records:
            raise UserError(f"{self.directory}: split {split!r} has no records")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.records[index]
