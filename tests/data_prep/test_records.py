"""Record validation, field mapping and answer-type inference."""

from __future__ import annotations

import pytest

from data_prep.errors import Reject
from data_prep.records import ColumnMap, infer_answer_type, normalise_record


def norm(**fields):
    fields.setdefault("images", [])
    return normalise_record(fields, split="train", source="test", default_id="auto-1")


@pytest.mark.parametrize("fields, reason", [
    ({"answer": "1"}, "missing_prompt"),
    ({"prompt": "  ", "answer": "1"}, "empty_prompt"),
    ({"prompt": "<image>\n", "answer": "1"}, "empty_prompt"),
    ({"prompt": "q"}, "missing_answer"),
    ({"prompt": "q", "answer": ""}, "empty_answer"),
    ({"prompt": "q", "answer": {"a": 1}}, "bad_record"),
    ({"prompt": ["q"], "answer": "1"}, "bad_record"),
    ({"prompt": "q", "answer": "1", "answer_type": "essay"}, "bad_record"),
    ({"prompt": "q", "answer": "d", "choices": ["a", "b"]}, "answer_not_in_choices"),
    ({"prompt": "q", "answer": "a", "choices": []}, "bad_record"),
    ({"prompt": "q", "answer": [1, 2, 3]}, "bad_record"),
    ({"prompt": "q", "answer": "a", "answer_type": "choice"}, "bad_record"),
])
def test_bad_fields_are_rejected(fields, reason) -> None:
    with pytest.raises(Reject) as info:
        norm(**fields)
    assert info.value.reason == reason


def test_record_shape_and_defaults() -> None:
    record = norm(prompt="<image>\nWhat is 2+2?", answer=4)
    assert record == {"id": "auto-1", "images": [], "prompt": "What is 2+2?", "answer": "4",
                      "answer_type": "numeric", "source": "test", "split": "train"}
    assert norm(prompt="q", answer="x", id=17)["id"] == "17"
    assert norm(prompt="q", answer=2.5)["answer"] == "2.5"


def test_choice_letter_maps_to_text() -> None:
    record = norm(prompt="q", answer="(B)", choices=["145°", "35°"])
    assert record["answer"] == "35°" and record["answer_type"] == "choice"
    assert record["meta"] == {"answer_letter": "B"}


def test_bbox_answer_is_json_text() -> None:
    record = norm(prompt="where?", answer=[1, 2, 30.5, 40])
    assert record["answer_type"] == "bbox" and record["answer"] == "[1, 2, 30.5, 40]"


@pytest.mark.parametrize("answer, expected", [
    ("42", "numeric"), ("-3.5", "numeric"), ("1,234", "numeric"), ("\\frac{1}{2}", "math"),
    ("2 \\sqrt { 221 }", "math"), ("x = 3", "math"), ("blue", "text"), ("yes", "text"),
])
def test_answer_type_inference(answer, expected) -> None:
    assert infer_answer_type(answer, None) == expected


def test_column_map_picks_first_present_key_and_keeps_extras_in_meta() -> None:
    fields = ColumnMap().map_row({"question": "q", "answer": "a", "image": "x.png", "level": 3,
                                  "blob": b"\x00", "meta": {"k": 1}})
    assert fields["prompt"] == "q" and fields["images"] == ["x.png"]
    assert fields["meta"] == {"k": 1, "level": 3}
    with pytest.raises(Reject):
        ColumnMap().map_row(["not", "an", "object"])
