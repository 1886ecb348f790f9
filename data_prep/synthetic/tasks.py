"""Rendered shape and digit tasks with exact answers, and their split-disjoint sampling.

Every sample is drawn from ``random.Random(split_seed(seed, split))``. A rendered image belongs to
the held-out set when the hash of its pixels falls below ``test_fraction``; ``train`` keeps only the
other images and every other split only these, so train and test never share an image, by
construction (identical pixels give an identical hash).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from PIL import Image

from data_prep.errors import DataPrepError
from data_prep.images import pixel_hash
from data_prep.records import Candidate
from data_prep.seeding import split_seed
from data_prep.synthetic.draw import COLORS, SHAPES, canvas, glyph, shape


@dataclass
class Sample:
    """One generated question about one image."""

    image: Image.Image
    prompt: str
    answer: str
    answer_type: str
    choices: list[str] | None = None
    meta: dict[str, Any] | None = None


def _cells(rng: random.Random, size: int, k: int) -> list[tuple[float, float, float]]:
    """k distinct cells of a grid as (centre x, centre y, cell width); 2x2 below 84 px, else 3x3."""
    grid = 2 if size < 84 else 3
    cell = size / grid
    chosen = rng.sample(range(grid * grid), k)
    return [((i % grid + 0.5) * cell, (i // grid + 0.5) * cell, cell) for i in chosen]


def _jitter(rng: random.Random, room: float) -> float:
    return rng.uniform(-room, room) if room > 0 else 0.0


def count_shapes(rng: random.Random, size: int) -> Sample:
    """1..4 (1..6 on larger canvases) shapes in distinct grid cells: 'How many shapes are there?'"""
    max_k = 4 if size < 84 else 6
    k = rng.randint(1, max_k)
    image, draw = canvas(size)
    for cx, cy, cell in _cells(rng, size, k):
        width = cell * rng.uniform(0.5, 0.7)
        room = (cell - width) / 2 - 1
        shape(draw, rng.choice(SHAPES), cx + _jitter(rng, room), cy + _jitter(rng, room), width,
              rng.choice(list(COLORS)))
    return Sample(image, "How many shapes are there?", str(k), "numeric", meta={"task": "count"})


def largest_color(rng: random.Random, size: int) -> Sample:
    """One large and 1-2 small shapes of distinct colours: 'What color is the largest shape?'"""
    k = rng.randint(2, 3)
    colors = rng.sample(list(COLORS), k)
    image, draw = canvas(size)
    for i, (cx, cy, cell) in enumerate(_cells(rng, size, k)):
        width = cell * (0.85 if i == 0 else 0.4)
        room = (cell - width) / 2 - 1
        shape(draw, rng.choice(SHAPES), cx + _jitter(rng, room), cy + _jitter(rng, room), width, colors[i])
    return Sample(image, "What color is the largest shape?", colors[0], "choice", sorted(COLORS),
                  {"task": "largest_color"})


def left_of(rng: random.Random, size: int) -> Sample:
    """Two different shapes side by side: 'Which shape is to the left of the <right shape>?'"""
    kinds = rng.sample(SHAPES, 2)
    colors = rng.sample(list(COLORS), 2)
    image, draw = canvas(size)
    width = size * rng.uniform(0.3, 0.4)
    for i in range(2):
        cx = size * (0.25 if i == 0 else 0.75) + _jitter(rng, size / 4 - width / 2 - 1)
        cy = size / 2 + _jitter(rng, size / 2 - width / 2 - 1)
        shape(draw, kinds[i], cx, cy, width, colors[i])
    return Sample(image, f"Which shape is to the left of the {kinds[1]}?", kinds[0], "choice", list(SHAPES),
                  {"task": "left_of"})


def digit_arithmetic(rng: random.Random, size: int) -> Sample:
    """'a+b' or 'a-b' with digits 0-9 drawn as seven-segment glyphs: 'What is the result?'"""
    a, b, op = rng.randint(0, 9), rng.randint(0, 9), rng.choice("+-")
    image, draw = canvas(size)
    unit = size / 12.0
    stroke = max(2, round(size / 20))
    top = (size - 4 * unit) / 2 + _jitter(rng, size / 2 - 2 * unit - stroke)
    left = (size - 8.4 * unit) / 2
    for i, char in enumerate(f"{a}{op}{b}"):
        glyph(draw, char, left + i * 3.2 * unit, top, unit, stroke)
    answer = a + b if op == "+" else a - b
    return Sample(image, "What is the result of the expression in the image?", str(answer), "numeric",
                  meta={"task": "arithmetic", "expression": f"{a}{op}{b}"})


TASKS: dict[str, Callable[[random.Random, int], Sample]] = {
    "count": count_shapes, "largest_color": largest_color, "left_of": left_of, "arithmetic": digit_arithmetic,
}


def in_split(image: Image.Image, split: str, test_fraction: float) -> bool:
    """Whether this image belongs to ``split`` (train, or the held-out set for any other name)."""
    held_out = int(pixel_hash(image)[:8], 16) / 16**8 < test_fraction
    return held_out != (split == "train")


def generate(tasks: list[str], n: int, seed: int, split: str, size: int,
             test_fraction: float = 0.2) -> Iterator[Candidate]:
    """n samples cycling through ``tasks``, all with images of this split only."""
    rng = random.Random(split_seed(seed, split, "shapes"))
    attempts = 0
    for i in range(n):
        task = tasks[i % len(tasks)]
        while True:
            attempts += 1
            if attempts > 1000 * (n + 10):
                raise DataPrepError(f"could not render {n} distinct-split images; raise --test-fraction")
            sample = TASKS[task](rng, size)
            if in_split(sample.image, split, test_fraction):
                break
        fields = {"images": [sample.image], "prompt": sample.prompt, "answer": sample.answer,
                  "answer_type": sample.answer_type, "choices": sample.choices, "meta": sample.meta}
        yield Candidate({"index": i}, fields=fields, default_id=f"{task}-{split}-{i}")
