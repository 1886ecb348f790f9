"""``python -m data_prep inspect``: counts and valid PNG reports."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from data_prep.__main__ import main


def test_inspect_writes_counts_histograms_and_contact_sheet(tmp_path: Path, capsys) -> None:
    out = tmp_path / "data"
    assert main(["synthetic", "--task", "count,largest_color", "--n", "10", "--output", str(out)]) == 0
    (tmp_path / "t.jsonl").write_text('{"prompt": "2+2?", "answer": "4"}\n')
    assert main(["jsonl", "--input", str(tmp_path / "t.jsonl"), "--output", str(out), "--split", "test",
                 "--format", "parquet"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out), "--samples", "6"]) == 0
    stdout = capsys.readouterr().out
    assert "'train': 10" in stdout and "'test': 1" in stdout
    counts = json.loads((out / "inspect" / "inspect.json").read_text())
    assert counts["answer_type"] == {"numeric": 6, "choice": 5} and counts["text_only"] == 1
    for name in ("histograms.png", "contact_sheet.png"):
        with Image.open(out / "inspect" / name) as image:
            assert image.format == "PNG" and image.width > 300


def test_inspect_unknown_split_is_a_user_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "d").mkdir()
    assert main(["inspect", str(tmp_path / "d"), "--split", "nope"]) == 2
    assert "no split" in capsys.readouterr().err
