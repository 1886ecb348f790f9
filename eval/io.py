"""Small file helpers for eval outputs: JSONL append/read (tolerating a cut-off last line), atomic JSON."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mhpo_vl.errors import UserError


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_jsonl(path: Path, rows: list[dict]) -> None:
    """Append rows as JSON lines and flush them to disk (a crash loses at most a partial last line)."""
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: Path, *, tolerate_cut: bool = False) -> tuple[list[dict], bool]:
    """Rows of a JSONL file and whether a cut-off last line was dropped.

    A malformed line is a ``UserError`` naming ``file:line``, except (with ``tolerate_cut``) the last
    line of a file an interrupted writer left without its newline.
    """
    rows: list[dict] = []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    dropped = False
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if tolerate_cut and lineno == len(lines) and not text.endswith("\n"):
                dropped = True
                break
            raise UserError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{lineno}: expected a JSON object per line")
        rows.append(row)
    return rows, dropped


def read_json(path: Path) -> Any:
    """A JSON file, or a ``UserError`` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
