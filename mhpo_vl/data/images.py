"""Image loading for the collator: path (relative to the record's ``image_root``) or PIL image -> RGB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from mhpo_vl.errors import UserError


def resolve_image_path(entry: str, image_root: str | None) -> Path:
    """Absolute path of an image entry; relative entries resolve against ``image_root``."""
    path = Path(entry)
    if not path.is_absolute() and image_root:
        path = Path(image_root) / path
    return path


def load_image(entry: Any, image_root: str | None = None, record_id: str = "?") -> Image.Image:
    """Open an image (path, PIL image, or ``{"bytes": ..., "path": ...}`` dict) as RGB, EXIF-rotated."""
    if isinstance(entry, Image.Image):
        image = entry
    elif isinstance(entry, dict) and entry.get("bytes"):
        import io

        image = Image.open(io.BytesIO(entry["bytes"]))
    else:
        if isinstance(entry, dict):
            entry = entry.get("path") or ""
        path = resolve_image_path(str(entry), image_root)
        try:
            image = Image.open(path)
            image.load()
        except (OSError, ValueError) as exc:
            raise UserError(f"record {record_id}: cannot read image {path}: {exc}") from None
    image = ImageOps.exif_transpose(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image
