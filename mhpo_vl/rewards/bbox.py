"""``iou_reward``: intersection over union of the answered box and the reference box."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .extract import unwrap
from .modes import extract_final

__all__ = ["iou_reward", "parse_box", "box_iou"]

MAX_BOX_CHARS = 1_000
_BOX_KEYS = ("bbox_2d", "bbox", "box")
_NUM = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)  # not the 1 of "x1"
Box = tuple[float, float, float, float]


def _as_box(values: Any) -> Box | None:
    if isinstance(values, Mapping):
        for key in _BOX_KEYS:
            if key in values:
                return _as_box(values[key])
        return None
    if isinstance(values, Sequence) and not isinstance(values, str):
        if len(values) == 1:  # [[x1, y1, x2, y2]] or [{"bbox_2d": [...]}]
            return _as_box(values[0])
        if len(values) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            box = tuple(float(v) for v in values)
            return box if all(math.isfinite(v) for v in box) else None
    return None


def parse_box(value: Any) -> Box | None:
    """A box ``(x1, y1, x2, y2)`` from a list/tuple, a JSON list or ``{"bbox_2d": [...]}``, or text
    holding exactly four numbers; None otherwise (including degenerate boxes with x2 <= x1 or y2 <= y1).

    >>> parse_box("[10, 20, 30, 40]")
    (10.0, 20.0, 30.0, 40.0)
    >>> parse_box('{"bbox_2d": [1, 2, 3, 4], "label": "cat"}')
    (1.0, 2.0, 3.0, 4.0)
    >>> parse_box("[10, 20, 30, 40], [1, 2, 3, 4]") is None
    True
    """
    if isinstance(value, str):
        text = unwrap(value) if len(value) <= MAX_BOX_CHARS else ""
        box = None
        if text and text[0] in "[{":
            try:
                box = _as_box(json.loads(text))
            except (ValueError, RecursionError):
                box = None
        if box is None:
            numbers = _NUM.findall(text)
            box = _as_box([float(n) for n in numbers]) if len(numbers) == 4 else None
    else:
        box = _as_box(value)
    if box is None or box[2] <= box[0] or box[3] <= box[1]:
        return None
    return box


def box_iou(a: Box, b: Box) -> float:
    """IoU of two valid boxes, in [0, 1]."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, width) * max(0.0, height)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return min(1.0, max(0.0, inter / union)) if union > 0 else 0.0


def iou_reward(completion: str, reference: Any, *, answer_tag: str = "answer", extract: str = "tags",
               **_record: Any) -> float:
    """IoU of the answer's box ``[x1, y1, x2, y2]`` with the reference box; 0.0 if either is malformed.

    >>> iou_reward("<answer>[0, 0, 10, 10]</answer>", [0, 0, 10, 10])
    1.0
    >>> iou_reward("<answer>[0, 0, 10, 10]</answer>", "[5, 0, 15, 10]")
    0.3333333333333333
    >>> iou_reward("<answer>[10, 10, 0, 0]</answer>", [0, 0, 10, 10])
    0.0
    """
    answer = extract_final(completion, extract, answer_tag=answer_tag)
    got = parse_box(answer) if answer is not None else None
    gold = parse_box(reference)
    if got is None or gold is None:
        return 0.0
    return box_iou(got, gold)
