"""Real good and bad image files for the data_prep tests, made on the fly in a directory."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

#: bad image kinds of ``make_zoo`` -> the reject reason each must get (bomb: with a 1 Mpx limit)
BAD = {
    "corrupt": "unreadable_image",
    "corrupt_body": "unreadable_image",
    "notimage": "unreadable_image",
    "directory": "unreadable_image",
    "empty": "empty_image_file",
    "truncated": "truncated_image",
    "bomb": "decompression_bomb",
    "tiny": "image_too_small",
    "link_out": "path_outside_root",
    "dotdot": "path_outside_root",
    "absolute_out": "path_outside_root",
    "missing": "missing_image",
    "dangling": "missing_image",
    "loop": "unreadable_image",
}


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(image: Image.Image, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **kwargs)
    return buffer.getvalue()


def gradient(width: int = 40, height: int = 30, seed: int = 0) -> Image.Image:
    """A distinct RGB test picture (non-uniform, so hashes differ by seed)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def exif_rotated_jpeg() -> bytes:
    """A 40x20 JPEG whose EXIF orientation (6) says 'rotate 90 degrees': it should load as 20x40."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _jpeg(gradient(40, 20, seed=5), exif=exif.tobytes())


def make_zoo(root: Path) -> dict[str, str]:
    """Write the files under ``root``; return kind -> path relative to root (or a special path)."""
    root.mkdir(parents=True, exist_ok=True)
    outside = root.parent / f"{root.name}_outside"
    outside.mkdir(exist_ok=True)
    good_png = _png(gradient(seed=1))
    corrupt_body = bytearray(_png(gradient(64, 64, seed=9)))
    corrupt_body[200:260] = bytes(60)
    files: dict[str, bytes] = {
        "good_png.png": good_png,
        "good_copy.png": good_png,
        "good_jpg.jpg": _jpeg(gradient(seed=2)),
        "cmyk.jpg": _jpeg(gradient(seed=3).convert("CMYK")),
        "exif.jpg": exif_rotated_jpeg(),
        "palette.png": _png(gradient(seed=4).convert("P")),
        "la.png": _png(Image.new("LA", (16, 16), (100, 128))),
        "gray16.png": _png(Image.fromarray(np.full((12, 12), 65535, dtype=np.uint16))),
        "bilevel.png": _png(Image.new("1", (16, 16), 1)),
        "corrupt.png": b"\x89PNG\r\n\x1a\n" + bytes(range(200)),
        "corrupt_body.png": bytes(corrupt_body),
        "notimage.jpg": b"hello, I am text pretending to be a JPEG",
        "empty.png": b"",
        "truncated.jpg": _jpeg(gradient(64, 64, seed=6))[:400],
        "bomb.png": _png(Image.new("1", (3000, 3000), 0)),
        "tiny.png": _png(Image.new("RGB", (2, 2), (255, 0, 0))),
        "sub/nested.png": _png(gradient(seed=7)),
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (outside / "secret.png").write_bytes(_png(gradient(seed=8)))
    os.symlink(outside / "secret.png", root / "link_out.png")
    os.symlink(root / "good_jpg.jpg", root / "link_in.jpg")
    os.symlink(root / "nowhere.png", root / "dangling.png")
    os.symlink(root / "loop_b.png", root / "loop_a.png")
    os.symlink(root / "loop_a.png", root / "loop_b.png")
    kinds = {name.rsplit(".", 1)[0].replace("sub/", ""): name for name in files}
    kinds.update(loop="loop_a.png", link_out="link_out.png", link_in="link_in.jpg", dangling="dangling.png",
                 dotdot=f"../{outside.name}/secret.png", absolute_out=str(outside / "secret.png"),
                 absolute_in=str(root / "good_jpg.jpg"), missing="no_such_file.png", directory="sub")
    return kinds
