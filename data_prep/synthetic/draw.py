"""Drawing primitives for the synthetic tasks: solid shapes and seven-segment digits on a plain canvas."""

from __future__ import annotations

from PIL import Image, ImageDraw

BACKGROUND = (255, 255, 255)
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
    "yellow": (230, 200, 30), "purple": (140, 60, 190), "orange": (240, 130, 30),
}
SHAPES = ("circle", "square", "triangle")

# Seven segments a..g as (x0, y0, x1, y1) in a 2 x 4 unit box (x right, y down).
_SEGMENTS = {
    "a": (0, 0, 2, 0), "b": (2, 0, 2, 2), "c": (2, 2, 2, 4), "d": (0, 4, 2, 4),
    "e": (0, 2, 0, 4), "f": (0, 0, 0, 2), "g": (0, 2, 2, 2),
}
_DIGITS = ["abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg"]


def canvas(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A square RGB canvas of ``size`` pixels on the background colour, and a drawer for it."""
    image = Image.new("RGB", (size, size), BACKGROUND)
    return image, ImageDraw.Draw(image)


def shape(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, size: float, color: str) -> None:
    """Draw a filled ``kind`` (circle/square/triangle) of width ``size`` centred at (cx, cy)."""
    half = size / 2
    box = (cx - half, cy - half, cx + half, cy + half)
    fill = COLORS[color]
    if kind == "circle":
        draw.ellipse(box, fill=fill)
    elif kind == "square":
        draw.rectangle(box, fill=fill)
    elif kind == "triangle":
        draw.polygon([(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], fill=fill)
    else:
        raise ValueError(f"unknown shape {kind!r}")


def glyph(draw: ImageDraw.ImageDraw, char: str, x: float, y: float, unit: float, width: int,
          color: tuple[int, int, int] = (0, 0, 0)) -> None:
    """Draw a digit (seven segments), '+' or '-' in a (2*unit) x (4*unit) box with top-left (x, y)."""
    if char.isdigit():
        segments = [_SEGMENTS[s] for s in _DIGITS[int(char)]]
    elif char == "+":
        segments = [(0, 2, 2, 2), (1, 1, 1, 3)]
    elif char == "-":
        segments = [(0, 2, 2, 2)]
    else:
        raise ValueError(f"no glyph for {char!r}")
    for x0, y0, x1, y1 in segments:
        draw.line([(x + x0 * unit, y + y0 * unit), (x + x1 * unit, y + y1 * unit)], fill=color, width=width)
