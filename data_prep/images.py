"""Safe image loading and normalisation, and the content-addressed image store.

Inputs come as a path (resolved inside an image root), raw bytes, a datasets ``{"bytes", "path"}``
dict, or an already decoded PIL image. Every failure raises ``Reject`` with a specific reason.
Accepted images are EXIF-transposed, converted to 8-bit RGB, checked for size, optionally
downscaled to ``max_pixels`` and stored once under ``images/<sha256 of the pixels>.png``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from data_prep.errors import Reject

ImageInput = Union[str, os.PathLike, bytes, dict, Image.Image]


@dataclass
class ImageOptions:
    """Limits applied to every image.

    max_image_pixels: decompression-bomb limit (width * height of the stored file).
    min_side: shortest allowed side in pixels. max_aspect_ratio: long side / short side limit.
    max_pixels: if set, larger images are downscaled (aspect kept) to at most this many pixels.
    image_format: "png" (lossless) or "jpeg" (quality 95, smaller for photos).
    """

    max_image_pixels: int = 64 * 1024 * 1024
    min_side: int = 4
    max_aspect_ratio: float = 200.0
    max_pixels: int | None = None
    image_format: str = "png"


def resolve_in_root(ref: str, root: Path) -> Path:
    """Return the real path of ``ref`` (relative to ``root``, or absolute inside it).

    Raises ``Reject("path_outside_root")`` for ``..`` components, absolute paths outside the root
    and symlinks that lead outside it; ``Reject("missing_image")`` when nothing is there.
    """
    if not ref or "\x00" in ref:
        raise Reject("bad_record", f"invalid image path {ref!r}")
    candidate = Path(ref)
    if ".." in candidate.parts:
        raise Reject("path_outside_root", f"{ref!r} contains '..'")
    try:
        root_real = root.resolve()
        real = (candidate if candidate.is_absolute() else root / candidate).resolve()
        if not real.is_relative_to(root_real):
            raise Reject("path_outside_root", f"{ref!r} resolves to {real}, outside the image root {root_real}")
        exists = real.exists()
    except (OSError, RuntimeError) as exc:  # symlink loops, names too long, permissions
        raise Reject("unreadable_image", f"{ref!r}: {exc}") from None
    if not exists:
        raise Reject("missing_image", f"{ref!r} not found under {root_real}")
    return real


@contextlib.contextmanager
def _pixel_limit(limit: int) -> Iterator[None]:
    """Set PIL's bomb limit and turn its DecompressionBombWarning into an error, restoring both after."""
    old_limit, old_truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = limit, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = old_limit, old_truncated


def _decode(data: bytes, name: str, limit: int) -> Image.Image:
    """Decode image bytes: header check, bomb check, ``verify()``, then a full ``load()``."""
    if not data:
        raise Reject("empty_image_file", f"{name} has 0 bytes")
    try:
        with _pixel_limit(limit):
            with Image.open(io.BytesIO(data)) as probe:
                _check_bomb(probe.size, name, limit)
                probe.verify()
            image = Image.open(io.BytesIO(data))
            image.load()
    except Reject:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Reject("decompression_bomb", f"{name}: {exc}") from None
    except UnidentifiedImageError:
        raise Reject("unreadable_image", f"{name} is not a recognised image format") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on hostile bytes; each is a bad image
        reason = "truncated_image" if "truncat" in str(exc).lower() else "unreadable_image"
        raise Reject(reason, f"{name}: {type(exc).__name__}: {exc}") from None
    return image


def _check_bomb(size: tuple[int, int], name: str, limit: int) -> None:
    if size[0] * size[1] > limit:
        raise Reject("decompression_bomb", f"{name}: {size[0]}x{size[1]} pixels exceed the limit of {limit}")


def _read_file(path: Path, name: str) -> bytes:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise Reject("unreadable_image", f"{name} is not a regular file")
        if info.st_size == 0:
            raise Reject("empty_image_file", f"{name} has 0 bytes")
        return path.read_bytes()
    except OSError as exc:
        raise Reject("unreadable_image", f"{name}: {exc.strerror or exc}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: alpha over white, 16/32-bit and float scaled to 0..255."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and values.max(initial=0) > 255):
            values = values / 257.0 if values.max(initial=0) <= 65535 else _stretch(values)
        elif mode == "F" and values.max(initial=0) <= 1.0:
            values = values * 255.0
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)


def load_image(ref: ImageInput, root: Path | None, options: ImageOptions) -> Image.Image:
    """Load one image input and return it normalised (RGB, EXIF-transposed, size-checked, resized)."""
    if isinstance(ref, Image.Image):
        _check_bomb(ref.size, "in-memory image", options.max_image_pixels)
        image = ref
    else:
        data, name = _image_bytes(ref, root)
        image = _decode(data, name, options.max_image_pixels)
    return normalise(image, options)


def _image_bytes(ref: ImageInput, root: Path | None) -> tuple[bytes, str]:
    if isinstance(ref, dict):
        if ref.get("bytes"):
            return bytes(ref["bytes"]), f"image bytes ({ref.get('path') or 'embedded'})"
        if ref.get("bytes") is not None and not ref.get("path"):
            raise Reject("empty_image_file", "embedded image has 0 bytes")
        ref = ref.get("path") or ""
    if isinstance(ref, (bytes, bytearray)):
        return bytes(ref), "image bytes"
    if isinstance(ref, (str, os.PathLike)):
        text = os.fspath(ref)
        if root is None:
            raise Reject("path_outside_root", f"image path {text!r} given but no --image-root")
        return _read_file(resolve_in_root(text, root), repr(text)), repr(text)
    raise Reject("bad_record", f"image entry of type {type(ref).__name__} is neither a path nor bytes")


def normalise(image: Image.Image, options: ImageOptions) -> Image.Image:
    """EXIF transpose, RGB conversion, size and aspect checks, optional downscale."""
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    try:
        image = ImageOps.exif_transpose(image) or image
    except Exception:  # noqa: BLE001 - a broken EXIF block should not lose an otherwise good image
        pass
    image = to_rgb(image)
    width, height = image.size
    if min(width, height) < options.min_side:
        raise Reject("image_too_small", f"{width}x{height} has a side < {options.min_side} px")
    if max(width, height) / min(width, height) > options.max_aspect_ratio:
        raise Reject("bad_aspect_ratio", f"{width}x{height} exceeds aspect ratio {options.max_aspect_ratio:g}")
    if options.max_pixels and width * height > options.max_pixels:
        scale = math.sqrt(options.max_pixels / (width * height))
        size = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def pixel_hash(image: Image.Image) -> str:
    """sha256 of the RGB pixels and size: equal images give equal names (deduplication)."""
    digest = hashlib.sha256(f"{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


class ImageStore:
    """Writes normalised images once under ``<out>/images/`` and returns paths relative to ``out``."""

    def __init__(self, out_dir: Path, image_format: str = "png") -> None:
        if image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format must be png or jpeg, not {image_format!r}")
        self.out_dir = out_dir
        self.image_format = image_format
        self.suffix = ".png" if image_format == "png" else ".jpg"
        (out_dir / "images").mkdir(parents=True, exist_ok=True)
        self.written = 0
        self.reused = 0

    def store(self, image: Image.Image) -> str:
        rel = f"images/{pixel_hash(image)[:40]}{self.suffix}"
        path = self.out_dir / rel
        if path.exists():
            self.reused += 1
            return rel
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        kwargs: dict[str, Any] = {"quality": 95} if self.image_format == "jpeg" else {}
        image.save(tmp, format=self.image_format.upper(), **kwargs)
        os.replace(tmp, path)
        self.written += 1
        return rel
