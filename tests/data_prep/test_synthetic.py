"""Synthetic tasks: determinism, train/test image disjointness, exact answers, clean images."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from data_prep.__main__ import main
from data_prep.images import pixel_hash
from data_prep.synthetic.draw import COLORS, SHAPES
from data_prep.synthetic.tasks import TASKS, in_split


def prep(out: Path, task: str, n: int, split: str = "train", seed: int = 0, size: int = 56) -> list[dict]:
    assert main(["synthetic", "--task", task, "--n", str(n), "--seed", str(seed), "--image-size", str(size),
                 "--output", str(out), "--split", split]) == 0
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


def image_hashes(out: Path, records: list[dict]) -> set[str]:
    return {pixel_hash(Image.open(out / r["images"][0]).convert("RGB")) for r in records}


@pytest.mark.parametrize("task", [*TASKS, "easy_vqa"])
def test_deterministic_and_disjoint_splits(tmp_path: Path, task: str) -> None:
    a = prep(tmp_path / "a", task, 40)
    b = prep(tmp_path / "b", task, 40)
    assert a == b
    assert [(r["prompt"], r["answer"]) for r in prep(tmp_path / "c", task, 40, seed=1)] != [
        (r["prompt"], r["answer"]) for r in a]
    test = prep(tmp_path / "a", task, 40, split="test")
    assert image_hashes(tmp_path / "a", a).isdisjoint(image_hashes(tmp_path / "a", test))
    assert len(a) == len(test) == 40


def test_split_membership_is_a_function_of_the_pixels() -> None:
    rng = random.Random(0)
    for _ in range(50):
        image = TASKS["count"](rng, 56).image
        assert in_split(image, "train", 0.2) != in_split(image, "test", 0.2)
        assert in_split(image, "test", 0.2) == in_split(image, "validation", 0.2)


def test_answers_are_exact(tmp_path: Path) -> None:
    for record in prep(tmp_path, "arithmetic", 30):
        a, op, b = record["meta"]["expression"]
        assert record["answer"] == str(int(a) + int(b) if op == "+" else int(a) - int(b))
        assert record["answer_type"] == "numeric"
    for record in prep(tmp_path, "largest_color", 20):
        assert record["answer_type"] == "choice" and record["answer"] in record["choices"] == sorted(COLORS)
    for record in prep(tmp_path, "left_of", 20):
        assert record["answer"] in SHAPES and record["answer"] not in record["prompt"]


def count_blobs(image: Image.Image) -> int:
    """Connected non-background regions, by flood-filling each one with the background colour."""
    image = image.copy()
    blobs = 0
    while True:
        ys, xs = np.nonzero((np.asarray(image) != 255).any(axis=2))
        if len(xs) == 0:
            return blobs
        ImageDraw.floodfill(image, (int(xs[0]), int(ys[0])), (255, 255, 255))
        blobs += 1


def test_count_images_have_that_many_shapes(tmp_path: Path) -> None:
    for record in prep(tmp_path, "count", 30):
        image = Image.open(tmp_path / record["images"][0]).convert("RGB")
        assert image.size == (56, 56)
        assert count_blobs(image) == int(record["answer"])


def test_easy_vqa_has_no_yes_no_and_uses_choices(tmp_path: Path) -> None:
    records = prep(tmp_path, "easy_vqa", 60, size=56)
    assert all(r["answer"] not in ("yes", "no") and r["answer"] in r["choices"] for r in records)
    assert {len(r["choices"]) for r in records} == {3, 8}
    assert Image.open(tmp_path / records[0]["images"][0]).size == (56, 56)


def test_mixed_tasks_and_image_size(tmp_path: Path) -> None:
    records = prep(tmp_path, "count,arithmetic", 6, size=84)
    assert [r["meta"]["task"] for r in records] == ["count", "arithmetic"] * 3
    assert Image.open(tmp_path / records[0]["images"][0]).size == (84, 84)
