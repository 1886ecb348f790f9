"""scripts/demo_real.py: arguments, summary, report and plots on fake results (no model, no training)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

DEMO_REAL = Path(__file__).resolve().parents[1] / "scripts" / "demo_real.py"


@pytest.fixture(scope="module")
def demo_real():
    spec = importlib.util.spec_from_file_location("mhpo_demo_real_script", DEMO_REAL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def _eval(acc: float, response: str) -> dict:
    return {"accuracy": acc, "n": 256, "decoding": "greedy", "extraction_failure_rate": 0.01,
            "mean_response_length": 9.5,
            "examples": [{"prompt": "State the final answer: 3 + 4 =", "answer": "7", "response": response,
                          "correct": response.endswith("7")}]}


def test_defaults_meet_the_check(demo_real):
    args = demo_real.parse_args([])
    assert args.n_test >= 200 and args.out == Path("runs/demo-real") and args.threads == 0
    assert demo_real.DEFAULT_RECIPE.is_file()
    args = demo_real.parse_args(["--threads", "1", "trainer.max_steps=3"])
    assert args.overrides == ["trainer.max_steps=3"]
    with pytest.raises(SystemExit):
        demo_real.parse_args(["--n-test", "0"])


def test_outputs(demo_real, tmp_path):
    summary = demo_real.build_summary(
        _eval(0.25, "The answer | is 12"), _eval(0.55, "3 + 4 = 7"), {"steps": 20, "seconds": 400.0},
        {"task_args": demo_real.TASK_ARGS, "n_train": 2000, "algo": "mhpo", "rl_steps": 20, "extract": "last_number"},
        {"rl": 400.0, "total": 600.0}, {"peak_rss_gb": 4.2, "torch_threads": 2, "cpus": 2, "load_start": 0.1,
                                        "load_end": 1.9})
    assert summary["rl_gain"] == pytest.approx(0.30)
    plots = demo_real.write_outputs(summary, tmp_path, tmp_path / "no_rl_run")
    assert plots == [demo_real.BAR_CHART]
    assert (tmp_path / "plots" / demo_real.BAR_CHART).read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["eval_before_rl"]["accuracy"] == 0.25 and saved["eval_after_rl"]["n"] == 256
    report = (tmp_path / "report.md").read_text()
    assert "| before RL (pretrained) | 0.250 |" in report and "RL gain: **+0.300**" in report
    assert "The answer \\| is 12 (wrong)" in report and "3 + 4 = 7 (ok)" in report
    line = demo_real.one_line(saved)
    assert "before RL 0.250 -> after 20 MHPO steps 0.550 (+0.300); 600 s, peak RSS 4.2 GB" in line
