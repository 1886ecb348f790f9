"""Box IoU: formats, partial overlap, malformed and degenerate boxes."""

import pytest

from mhpo_vl.rewards import iou_reward
from mhpo_vl.rewards.bbox import box_iou, parse_box

REF = [0, 0, 10, 10]

CASES = [
    ("[0, 0, 10, 10]", REF, 1.0),
    ("(0, 0, 10, 10)", REF, 1.0),
    ("0 0 10 10", REF, 1.0),
    ("[[0, 0, 10, 10]]", REF, 1.0),
    ('{"bbox_2d": [0, 0, 10, 10], "label": "cat"}', REF, 1.0),
    ('[{"bbox_2d": [0, 0, 10, 10]}]', REF, 1.0),
    ("x1=0, y1=0, x2=10, y2=10", REF, 1.0),
    ("[0, 0, 10, 10]", "[0, 0, 10, 10]", 1.0),
    ("[0.0, 0.0, 5, 10]", REF, 0.5),
    ("[5, 0, 15, 10]", REF, 1 / 3),
    ("[20, 20, 30, 30]", REF, 0.0),
    ("[10, 10, 0, 0]", REF, 0.0),  # degenerate: x2 < x1
    ("[0, 0, 0, 10]", REF, 0.0),  # zero width
    ("[0, 0, 10]", REF, 0.0),
    ("[0, 0, 10, 10], [1, 1, 2, 2]", REF, 0.0),  # two boxes
    ("[0, 0, 10, nan]", REF, 0.0),
    ("[0, 0, 1e400, 10]", REF, 0.0),
    ("cat", REF, 0.0),
    ("[0, 0, 10, 10]", [0, 0, 0, 0], 0.0),  # degenerate reference
    ("[0, 0, 10, 10]", "junk", 0.0),
    ("[" * 100_000 + "]" * 100_000, REF, 0.0),
]


@pytest.mark.parametrize(("answer", "reference", "expected"), CASES)
def test_iou_table(answer, reference, expected):
    got = iou_reward(f"<answer>{answer}</answer>", reference)
    assert got == pytest.approx(expected)
    assert 0.0 <= got <= 1.0


def test_helpers_and_kwargs():
    assert parse_box((1, 2, 3, 4)) == (1.0, 2.0, 3.0, 4.0)
    assert parse_box([True, 0, 1, 1]) is None
    assert box_iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert iou_reward("[0, 0, 10, 10]", REF, answer_type="bbox") == 1.0
