"""easy-vqa (PyPI): real 64x64 shape/colour images and questions, without the yes/no questions.

Train uses the package's train images, every other split its test images, so they never share
an image. Answers are single words; each record is a choice question whose choices are the
colour or the shape vocabulary, whichever the answer belongs to.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator

from PIL import Image

from data_prep.errors import DataPrepError
from data_prep.records import Candidate
from data_prep.seeding import split_seed

SHAPE_WORDS = ("circle", "rectangle", "triangle")


def generate(n: int, seed: int, split: str, size: int | None) -> Iterator[Candidate]:
    """n easy-vqa questions (seeded shuffle of the split), images resized to ``size`` if given."""
    try:
        import easy_vqa
    except ImportError:
        raise DataPrepError("the easy_vqa task needs `pip install easy-vqa`") from None
    train = split == "train"
    texts, answers, image_ids = easy_vqa.get_train_questions() if train else easy_vqa.get_test_questions()
    paths = easy_vqa.get_train_image_paths() if train else easy_vqa.get_test_image_paths()
    vocabulary = easy_vqa.get_answers()
    colors = sorted(a for a in vocabulary if a not in ("yes", "no") and a not in SHAPE_WORDS)
    keep = [i for i, answer in enumerate(answers) if answer not in ("yes", "no")]
    random.Random(split_seed(seed, split, "easy_vqa")).shuffle(keep)
    if n > len(keep):
        print(f"data_prep: warning: easy_vqa {'train' if train else 'test'} has only {len(keep)} "
              f"non-yes/no questions; writing {len(keep)}", file=sys.stderr)
    for i, q in enumerate(keep[:n]):
        with Image.open(paths[image_ids[q]]) as source:
            image = source.convert("RGB")
        if size and image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.LANCZOS)
        choices = list(SHAPE_WORDS) if answers[q] in SHAPE_WORDS else colors
        fields = {"images": [image], "prompt": texts[q].capitalize(), "answer": answers[q],
                  "answer_type": "choice", "choices": choices,
                  "meta": {"task": "easy_vqa", "image_id": image_ids[q]}}
        yield Candidate({"index": i}, fields=fields, default_id=f"easy_vqa-{split}-{q}")
