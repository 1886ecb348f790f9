"""Copies of dataset images for the viewer: small PNG/JPEG thumbnails named by content, never a link.

Only images inside the allowed roots (the run's or the benchmark's data directory) are read: a path
that resolves elsewhere, symlinks included, is refused and reported, not followed.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

from PIL import Image

from mhpo_vl.data.images import load_image

MAX_SIDE = 384  # thumbnail's longest side in pixels
SMALL_SIDE = 160  # at or below this the copy is a PNG (sharp edges), above a JPEG (small files)


def inside(path: Path, roots: list[Path]) -> bool:
    """Whether ``path`` (symlinks resolved) lies inside one of ``roots`` (resolved)."""
    real = path.resolve()
    return any(real.is_relative_to(root.resolve()) for root in roots)


def _source_key(entry: Any, path: Path | None) -> bytes:
    if path is not None:
        stat = path.stat()
        return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()
    if isinstance(entry, dict):
        return bytes(entry["bytes"])
    if isinstance(entry, Image.Image):
        return entry.tobytes() + repr((entry.size, entry.mode)).encode()
    raise TypeError(type(entry).__name__)


def save_thumbnail(entry: Any, out_dir: Path, *, roots: list[Path], image_root: str | None = None,
                   max_side: int = MAX_SIDE) -> dict[str, str]:
    """Write a thumbnail of one image entry (relative/absolute path, ``{"bytes"}`` dict or PIL image) into
    ``out_dir``; returns ``{"file": name}`` (name relative to ``out_dir``) or ``{"error": reason}``.

    Same source, same name: an existing file is reused, so logging one image at many steps costs one copy.
    """
    path = None
    if isinstance(entry, (str, os.PathLike)) or (isinstance(entry, dict) and not entry.get("bytes")):
        raw = entry.get("path") if isinstance(entry, dict) else entry
        path = Path(str(raw or ""))
        if not path.is_absolute() and image_root:
            path = Path(image_root) / path
        if not inside(path, roots):
            return {"error": "outside the data directory: not copied"}
        if not path.is_file():
            return {"error": "file not found"}
    try:
        key = hashlib.sha1(_source_key(entry, path)).hexdigest()[:20]
    except (OSError, TypeError, KeyError) as exc:
        return {"error": f"unreadable: {exc}"}
    for ext in (".png", ".jpg"):
        if (out_dir / f"{key}{ext}").is_file():
            return {"file": f"{key}{ext}"}
    try:
        image = load_image(path if path is not None else entry)
        image.thumbnail((max_side, max_side))
        small = max(image.size) <= SMALL_SIDE
        buf = io.BytesIO()
        image.save(buf, format="PNG" if small else "JPEG", **({} if small else {"quality": 85}))
    except Exception as exc:  # any decoder failure is reported on the page, not raised
        return {"error": f"cannot decode: {type(exc).__name__}"}
    name = f"{key}{'.png' if small else '.jpg'}"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{name}.{os.getpid()}.tmp"
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, out_dir / name)
    return {"file": name}
