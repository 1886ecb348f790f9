"""Escaping and containment of the viewer page, without a browser."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from mhpo_vl.cli import main as mhpo_vl_main
from mhpo_vl.viewer.curves import curves_html
from mhpo_vl.viewer.images import save_thumbnail
from mhpo_vl.viewer.page import copy_image, json_for_html, summary_table, valid_image_name, write_page
from mhpo_vl.viewer.run_view import build_run_viewer, token_scales

EVIL = "</script><script>alert(1)</script><img src=x onerror=alert(2)>&amp;\u2028"


def _data_block(page: str) -> str:
    return re.search(r'<script type="application/json" id="viewer-data">(.*?)</script>', page, re.S).group(1)


def test_json_block_cannot_be_closed_and_round_trips():
    text = json_for_html({"t": EVIL, "nan": float("nan"), "inf": [float("inf")]})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"t": EVIL, "nan": None, "inf": [None]}


def test_page_escapes_title_and_header_and_allows_only_its_own_script(tmp_path):
    path = write_page(tmp_path, title=EVIL, data={"kind": "run", "steps": [], "quantities": [], "x": EVIL},
                      header_html=summary_table([(EVIL, EVIL)]))
    page = path.read_text()
    assert "alert(1)</script>" not in page and "<img src=x" not in page
    assert page.count("<script") == 2 and json.loads(_data_block(page))["x"] == EVIL
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1))
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp
    for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink


@pytest.mark.parametrize("name,ok", [("0123456789abcdef.png", True), ("deadbeefdeadbeef.jpg", True),
                                     ("../x.png", False), ("/etc/passwd", False), ("abc.png", False),
                                     ("0123456789abcdef.svg", False), ("0123456789ABCDEF.png", False), (None, False)])
def test_only_our_thumbnail_names_are_accepted(name, ok):
    assert valid_image_name(name) is ok


def test_copy_refuses_links_out_of_the_run(tmp_path):
    src = tmp_path / "run" / "rollouts" / "images"
    src.mkdir(parents=True)
    outside = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(outside)
    (src / "0123456789abcdef.png").symlink_to(outside)
    assert not copy_image(src, "0123456789abcdef.png", tmp_path / "out")
    Image.new("RGB", (4, 4)).save(src / "fedcba9876543210.png")
    assert copy_image(src, "fedcba9876543210.png", tmp_path / "out")
    assert (tmp_path / "out" / "images" / "fedcba9876543210.png").is_file()


def test_thumbnails_stay_inside_the_roots(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (900, 300), "blue").save(data / "big.png")
    (data / "link.png").symlink_to(tmp_path / "elsewhere.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "elsewhere.png")
    out = tmp_path / "thumbs"
    made = save_thumbnail("big.png", out, roots=[data], image_root=str(data))
    with Image.open(out / made["file"]) as im:
        assert max(im.size) <= 384
    assert save_thumbnail("big.png", out, roots=[data], image_root=str(data)) == made  # reused
    assert "outside" in save_thumbnail("link.png", out, roots=[data], image_root=str(data))["error"]
    assert "outside" in save_thumbnail(str(tmp_path / "elsewhere.png"), out, roots=[data])["error"]
    assert "not found" in save_thumbnail("missing.png", out, roots=[data], image_root=str(data))["error"]
    (data / "bad.png").write_bytes(b"not an image")
    assert "cannot decode" in save_thumbnail("bad.png", out, roots=[data], image_root=str(data))["error"]
    assert "file" in save_thumbnail({"bytes": (data / "big.png").read_bytes()}, out, roots=[])


def _fake_run(root: Path) -> Path:
    run = root / "run"
    (run / "rollouts").mkdir(parents=True)
    (run / "config.yaml").write_text("algo:\n  name: mhpo\nnote: '" + EVIL.replace("'", "''") + "'\n")
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "reward/mean": s / 10, "loss": float("nan")})
                                               + "\n" for s in (1, 2)))
    response = {"index": 0, "text": EVIL, "tokens": [EVIL], "length": 1, "truncated": False, "reward": 1.0,
                "components": {}, "advantage": 0.0, "correct": True, "logp": [-1.0], "log_ratio": [0.1],
                "weight": [0.3], "entropy": [2.0]}
    line = {"schema": 1, "step": 2, "id": EVIL, "prompt": EVIL, "answer": EVIL, "answer_type": "math",
            "images": [{"path": "../../etc/passwd", "file": "../../../etc/passwd"}], "responses": [response]}
    (run / "rollouts" / "step_2.jsonl").write_text(json.dumps(line) + "\n")
    return run


def test_run_page_from_a_hostile_log_is_escaped_and_links_nothing(tmp_path):
    run = _fake_run(tmp_path)
    page = build_run_viewer(run).read_text()
    static = page.replace(_data_block(page), "")
    assert "alert(1)</script>" not in static and "<img src=x" not in static
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in static  # config.yaml shown escaped
    data = json.loads(_data_block(page))
    image = data["steps"][0]["prompts"][0]["images"][0]
    assert image["file"] is None and "missing" in image["error"]  # a traversal name is never copied or linked
    assert not (run / "viewer" / "images").exists()
    assert "<svg" in static  # curves from metrics.jsonl (the NaN loss is skipped)


def test_scales_cover_the_logged_values():
    steps = [{"prompts": [{"responses": [{"log_ratio": [-0.2, 0.5], "weight": [0.265, 0.265], "entropy": [1.0],
                                          "logp": [-3.0, -0.1]}]}]}]
    scales = {q["key"]: q for q in token_scales(steps, "exp(psi - zeta)")}
    assert scales["log_ratio"]["min"] == -0.5 and scales["log_ratio"]["max"] == 0.5
    assert scales["weight"]["max"] == 0.265 and scales["weight"]["min"] < 0.265  # constant: no colour
    assert "exp(psi - zeta)" in scales["weight"]["help"] and scales["logp"]["min"] == -3.0


def test_curves_skip_missing_metrics():
    assert "No metrics" in curves_html([])
    assert curves_html([{"step": 1, "accuracy": 0.5}]).count("<figure>") == 1


def test_view_cli_errors_are_one_line(tmp_path, capsys):
    assert mhpo_vl_main(["view", str(tmp_path / "nope")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert mhpo_vl_main(["view", str(tmp_path / "empty")]) == 2
    assert "not a training run directory" in capsys.readouterr().err
    run = _fake_run(tmp_path)
    (run / "rollouts" / "step_3.jsonl").write_text("{not json\n")
    assert mhpo_vl_main(["view", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "step_3.jsonl:1" in err and "\n" not in err
