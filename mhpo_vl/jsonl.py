"""Strict JSON-lines reading shared by the dataset and the eval loaders: errors name file:line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mhpo_vl.errors import UserError


def iter_jsonl(path: str | Path, hint: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; a bad line raises UserError naming it."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{line_no}: malformed JSON ({exc.msg}){hint}") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{line_no}: expected a JSON object per line")
            yield line_no, row
