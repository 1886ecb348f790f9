"""The accounting invariant on random inputs, and the pipeline's handling of unexpected failures."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from data_prep import Candidate, PrepareOptions, prepare
from data_prep.__main__ import main

_value = st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=6), st.lists(st.integers(0, 3), max_size=4))
_record = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.sampled_from(["a", "b", "c"]), st.integers(0, 3)),
    "prompt": _value, "question": _value, "answer": _value, "answer_type": st.sampled_from(["math", "choice", "x"]),
    "choices": st.one_of(st.none(), st.lists(st.sampled_from(["a", "b", "1"]), max_size=3)),
    "image": st.sampled_from(["ok.png", "missing.png", "../ok.png", "", "bad.png"]),
})
# Text that a UTF-8 file can hold: no line breaks, no lone surrogates (category Cs cannot be encoded).
# Invalid bytes are what real files contain instead; test_invalid_utf8_bytes_are_counted_rejects covers them.
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                       blacklist_characters="\n\r\x85\u2028\u2029"), max_size=12)
_line = st.one_of(_record.map(json.dumps), _text)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_line, min_size=1, max_size=12))
def test_in_equals_out_plus_rejects_on_random_lines(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        Image.new("RGB", (8, 8), (1, 2, 3)).save(base / "ok.png")
        (base / "bad.png").write_bytes(b"not an image")
        (base / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        assert main(["jsonl", "--input", str(base / "in.jsonl"), "--output", str(base / "out")]) == 0
        records = [json.loads(x) for x in (base / "out" / "train.jsonl").read_text().splitlines()]
        rejects = [json.loads(x) for x in (base / "out" / "rejects.jsonl").read_text().splitlines()]
        assert len(records) + len(rejects) == len(lines)
        assert len({r["id"] for r in records}) == len(records)
        assert len({r["line"] for r in rejects}) == len(rejects)
        assert all(r["reason"] != "unexpected_error" for r in rejects), rejects


def test_invalid_utf8_bytes_are_counted_rejects(tmp_path: Path) -> None:
    good = json.dumps({"id": "ok", "prompt": "q", "answer": "1"}).encode()
    lines = [
        good,
        b'{"id": "lone-surrogate", "prompt": "\xed\xa0\x80", "answer": "1"}',  # UTF-8-encoded U+D800
        b'{"id": "latin1", "prompt": "caf\xe9", "answer": "1"}',  # Latin-1, not UTF-8
        b"\xff\xfe\x00garbage",
        b'{"id": "cut", "prompt": "\xe2\x82", "answer": "1"}',  # a multi-byte character cut short
    ]
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert main(["jsonl", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out")]) == 0
    records = [json.loads(x) for x in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    rejects = [json.loads(x) for x in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["ok"]
    assert sorted(r["line"] for r in rejects) == [2, 3, 4, 5]
    assert all(r["reason"] == "malformed_json" and "not UTF-8" in r["detail"] for r in rejects), rejects
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["train"]
    assert (summary["in"], summary["out"], summary["rejected_by_reason"]) == (5, 1, {"malformed_json": 4})


class _Exploding(Image.Image):
    """A PIL image whose pixel access fails in a way no validation step anticipates."""

    def __init__(self) -> None:
        super().__init__()
        self._size, self._mode = (8, 8), "RGB"

    def load(self):  # noqa: ANN201 - PIL signature
        raise ZeroDivisionError("boom")


def test_unexpected_exception_becomes_a_counted_reject(tmp_path: Path) -> None:
    candidates = [Candidate({"index": 0}, fields={"prompt": "q", "answer": "1", "images": [_Exploding()]}),
                  Candidate({"index": 1}, fields={"prompt": "q", "answer": "1", "images": []})]
    summary = prepare(candidates, PrepareOptions(out_dir=tmp_path))
    assert (summary["in"], summary["out"], summary["rejected_by_reason"]) == (2, 1, {"unexpected_error": 1})
    reject = json.loads((tmp_path / "rejects.jsonl").read_text())
    assert reject["index"] == 0 and "ZeroDivisionError" in reject["detail"]


def test_damaged_parquet_is_a_user_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "train.parquet").write_bytes(b"PAR1 definitely not parquet")
    assert main(["hf", "--input", str(tmp_path / "train.parquet"), "--output", str(tmp_path / "o")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert not (tmp_path / "o" / "train.jsonl").exists()
