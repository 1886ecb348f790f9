"""The viewers in a real headless Chromium: a 3-step tiny run logged every step, and an eval output.

Checks what a user would see: one ``data-sample`` element per logged response, every image loaded
(``<body data-images-loaded/-failed>``), and model text holding ``<script>``/``<img onerror>`` shown as
inert text (the injected code would mark ``<body data-pwned>`` if it ever ran).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mhpo_vl.cli import main as mhpo_vl_main
from mhpo_vl.config import config_from_dict
from mhpo_vl.trainer.rl import run_training
from mhpo_vl.viewer.browser import dump_dom
from tests.mhpo_vl.viewer.dom import Dom, needs_chromium

SCRIPT = "<script>document.body.setAttribute('data-pwned','script')</script>"
ONERROR = "<img src=x onerror=\"document.body.setAttribute('data-pwned','img')\">"

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("viewer_run")
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--n", "6", "--split",
                    "train", "--output", str(root / "data")], check=True, capture_output=True)
    cfg = config_from_dict({
        "model": {"name_or_path": str(tiny_model_dir("qwen2_5_vl")), "min_pixels": 3136, "max_pixels": 3136},
        "data": {"train_dir": str(root / "data"), "prompt_template": "plain", "max_prompt_tokens": 64},
        "rollout": {"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 4},
        "trainer": {"output_dir": str(root / "run"), "max_steps": 3, "lr": 1e-3, "lr_schedule": "constant",
                    "mixed_precision": "no"},
        "logging": {"progress_bar": False, "plots": False, "rollouts_every": 1, "rollouts_per_step": 2},
    })
    run_training(cfg)
    return root / "run"


def _logged(run: Path) -> tuple[int, int]:
    """(responses, images) in the run's rollout logs."""
    lines = [json.loads(x) for p in sorted((run / "rollouts").glob("step_*.jsonl")) for x in p.read_text().splitlines()]
    return sum(len(x["responses"]) for x in lines), sum(len(x["images"]) for x in lines)


def test_run_viewer_in_chromium(run_dir, tmp_path):
    responses, images = _logged(run_dir)
    assert responses == 3 * 2 * 4 and images == 3 * 2  # 3 steps x 2 prompts x G=4; one image per prompt
    assert mhpo_vl_main(["view", str(run_dir), "--out", str(tmp_path / "view")]) == 0
    dom = Dom(dump_dom(tmp_path / "view" / "index.html"))
    assert dom.body.get("data-rendered") == "1"
    assert len(dom.with_attr("data-sample")) == responses
    assert dom.body.get("data-images-failed") == "0"
    assert dom.body.get("data-images-loaded") == str(images) == str(len(dom.all("img")))
    # the newest step is shown with its tokens coloured; every step has its section
    assert [a["data-step"] for a in dom.with_attr("data-step")] == ["1", "2", "3"]
    assert dom.all("span") and any(a.get("class") == "tok" for a in dom.all("span"))
    # nothing outside the output folder is referenced
    assert all(a["src"].startswith("images/") for a in dom.all("img"))
    # curve panels: every value axis covers its series; the hazard weight (~0.265, near-constant) is not
    # drawn on an axis through zero (it once was, on -0.235..0.765)
    axes = {a["aria-label"]: [float(v) for v in a["data-y-axis"].split()] for a in dom.all("svg")}
    lo, hi = axes["hazard weight exp(-zeta) (mean)"]
    assert 0 < lo < 0.265 < hi < 0.3 and all(lo < hi for lo, hi in axes.values())


def test_injected_responses_are_inert_text(run_dir, tmp_path):
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(run_dir), str(run)], check=True)
    step = run / "rollouts" / "step_3.jsonl"
    lines = [json.loads(x) for x in step.read_text().splitlines()]
    lines[0]["responses"][0].update(text=SCRIPT, tokens=[SCRIPT[:20], SCRIPT[20:]] + [""] * 2)
    lines[0]["responses"][1]["text"] = ONERROR  # tokens no longer match: shown as plain text
    lines[1]["prompt"] = SCRIPT + ONERROR
    step.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert mhpo_vl_main(["view", str(run)]) == 0
    html = (run / "viewer" / "index.html").read_text()
    assert SCRIPT not in html and ONERROR not in html  # not even in the static file
    dom = Dom(dump_dom(run / "viewer" / "index.html"))
    assert "data-pwned" not in dom.body
    assert len(dom.all("script")) == 2  # the data block and the viewer's own script, nothing injected
    assert not [a for a in dom.all("img") if a.get("src") == "x" or "onerror" in a]
    text = "".join(dom.text)
    assert SCRIPT in text and ONERROR in text  # shown, as text
    assert len(dom.with_attr("data-sample")) == 24


def test_eval_viewer_side_by_side_in_chromium(tmp_path):
    from eval.__main__ import main as eval_main
    from tests.eval.fixtures import write_geo3k, write_mathvista

    write_mathvista(tmp_path / "data")
    write_geo3k(tmp_path / "data")
    a = tmp_path / "a.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "1", "response": "<answer>B</answer>"}, {"id": "1", "response": "<answer>A</answer>"},
        {"id": "2", "response": "<answer>2.5</answer>"}, {"id": "3", "response": "<answer>4</answer>"}]))
    b = tmp_path / "b.jsonl"
    b.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "1", "response": SCRIPT}, {"id": "2", "response": ONERROR}, {"id": "4", "response": "1.5"}]))
    for name, responses in (("A", a), ("B", b)):
        assert eval_main(["score", "--benchmark", "mathvista", "--data", str(tmp_path / "data"), "--responses",
                          str(responses), "--output", str(tmp_path / name)]) == 0
    assert eval_main(["score", "--benchmark", "geo3k", "--data", str(tmp_path / "data"), "--responses",
                      str(_geo(tmp_path)), "--output", str(tmp_path / "A")]) == 0
    out = tmp_path / "view"
    assert eval_main(["view", str(tmp_path / "A"), "--compare", str(tmp_path / "B"), "--out", str(out)]) == 0
    samples = sum(len((tmp_path / n / "samples.jsonl").read_text().splitlines()) for n in "AB")
    dom = Dom(dump_dom(out / "index.html"))
    assert len(dom.with_attr("data-sample")) == samples == 4 + 2 + 3
    assert dom.body.get("data-images-failed") == "0"
    assert int(dom.body["data-images-loaded"]) == len(dom.all("img")) == 4 + 2  # mathvista ids 1-4, geo3k 2 rows
    assert "data-pwned" not in dom.body and len(dom.all("script")) == 2
    text = "".join(dom.text)
    assert SCRIPT in text and ONERROR in text
    # the ids of both outputs are joined: mathvista id 1 holds A's two samples and B's one
    assert {a["data-sample"] for a in dom.with_attr("data-sample") if "/mathvista/1/" in a["data-sample"]} == {
        "A/mathvista/1/0", "A/mathvista/1/1", "B/mathvista/1/0"}


def _geo(tmp_path: Path) -> Path:
    path = tmp_path / "geo.jsonl"
    path.write_text(json.dumps({"id": "0", "response": "<answer>60</answer>"}) + "\n"
                    + json.dumps({"id": "1", "response": "<answer>60</answer>"}) + "\n")
    return path
