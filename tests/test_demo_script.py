"""scripts/demo.py: the summary/report/plot writing, on fake per-seed results (no training)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

DEMO_PATH = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("mhpo_demo_script", DEMO_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def _seed(seed: int, before: float, after: float, cont: float, n: int = 1000) -> dict:
    return {
        "seed": seed,
        "eval_before_rl": {"accuracy": before, "n": n},
        "eval_after_rl": {"accuracy": after, "n": n, "checkpoint": f"seed_{seed}/rl/checkpoints/step_600"},
        "sft_continuation": {"accuracy": cont, "n": n, "steps": 150, "seconds": 120.0},
        "rl": {"steps": 600, "seconds": 118.0, "run_dir": f"seed_{seed}/rl"},
        "timings": {"sft": 30.0, "rl": 120.0},
    }


def _fake_rl_dir(root: Path) -> Path:
    """A run directory with the trainer's plot files (tiny valid PNGs written by matplotlib)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    plots = root / "rl" / "plots"
    plots.mkdir(parents=True)
    for name in ("reward.png", "accuracy.png", "response_length.png", "grad_norm.png", "lr.png"):
        fig = Figure(figsize=(1, 1))
        FigureCanvasAgg(fig)
        fig.savefig(plots / name)
    return root / "rl"


def test_summary_means_over_seeds_and_lists_per_seed(demo):
    per_seed = [_seed(0, 0.50, 0.58, 0.55), _seed(1, 0.52, 0.60, 0.65)]
    summary = demo.build_summary(per_seed, {"image_size": 56}, {"total": 300.0})
    assert summary["eval_before_rl"]["accuracy"] == pytest.approx(0.51)
    assert summary["eval_after_rl"]["accuracy"] == pytest.approx(0.59)
    assert summary["eval_after_rl"]["n"] == 1000
    assert summary["eval_after_rl"]["per_seed"] == [0.58, 0.60]
    assert summary["sft_continuation"]["accuracy"] == pytest.approx(0.60)
    assert summary["rl_gain"] == pytest.approx(0.08)
    assert summary["rl_gain_per_seed"] == pytest.approx([0.08, 0.08])
    assert summary["winner"] == "sft_continuation"
    assert [s["seed"] for s in summary["per_seed"]] == [0, 1]


def test_single_seed_has_no_spread_fields(demo):
    summary = demo.build_summary([_seed(0, 0.4, 0.5, 0.45)], {}, {})
    assert summary["eval_after_rl"] == {"accuracy": 0.5, "n": 1000}
    assert summary["winner"] == "rl"
    with pytest.raises(ValueError):
        demo.build_summary([], {}, {})


@pytest.mark.parametrize(("rl", "sft", "expected", "phrase"), [
    (0.60, 0.55, "rl", "RL won"),
    (0.55, 0.60, "sft_continuation", "SFT-continuation won"),
    (0.5501, 0.5504, "tie", "tied"),
])
def test_winner_and_verdict(demo, rl, sft, expected, phrase):
    summary = demo.build_summary([_seed(0, 0.5, rl, sft)], {}, {})
    assert summary["winner"] == expected
    assert phrase in demo.verdict(summary)


def test_write_outputs_writes_summary_report_and_plots(demo, tmp_path):
    rl_dir = _fake_rl_dir(tmp_path)
    out = tmp_path / "demo"
    out.mkdir()
    summary = demo.build_summary([_seed(0, 0.50, 0.57, 0.53)],
                                 {"image_size": 56, "n_train": 10168, "rl_steps": 600}, {"rl": 120.0, "total": 400.0})
    plots = demo.write_outputs(summary, out, rl_dir)

    saved = json.loads((out / "summary.json").read_text())
    assert saved["eval_before_rl"] == {"accuracy": 0.5, "n": 1000}
    assert saved["eval_after_rl"]["accuracy"] == 0.57
    assert {"sft_continuation", "per_seed", "config", "timings"} <= saved.keys()

    assert plots[0] == demo.BAR_CHART
    assert set(plots) == {demo.BAR_CHART, *demo.RL_PLOTS}  # lr.png is not copied
    for name in plots:
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    report = (out / "report.md").read_text()
    assert "RL won: 57.0% vs 53.0%" in report
    assert "| after RL (final checkpoint) | 0.570 | n/a | 1000 |" in report
    for name in plots:
        assert f"(plots/{name})" in report
    assert "before RL 0.500 -> after RL 0.570 (+0.070)" in demo.one_line(saved)


def test_write_outputs_without_rl_plots(demo, tmp_path):
    summary = demo.build_summary([_seed(0, 0.5, 0.5, 0.6)], {}, {})
    plots = demo.write_outputs(summary, tmp_path, tmp_path / "missing_run")
    assert plots == [demo.BAR_CHART]
    assert "SFT-continuation won" in (tmp_path / "report.md").read_text()


def test_assets_ready_needs_matching_marker_and_files(demo, tmp_path):
    args = demo.parse_args(["--assets-only", "--out", str(tmp_path)])
    spec = demo.asset_spec(args, demo.ModelSize())
    assert not demo.assets_ready(tmp_path, spec)
    sft = tmp_path / "seed_0" / "sft"
    sft.mkdir(parents=True)
    (tmp_path / "data").mkdir()
    for path in (tmp_path / "data" / "train.jsonl", tmp_path / "data" / "test.jsonl", sft / "config.json",
                 sft / "model.safetensors", sft / "summary.json"):
        path.write_text("{}")
    assert not demo.assets_ready(tmp_path, spec), "no marker: a half-built or demo-built tree is rebuilt"
    (tmp_path / demo.ASSETS_MARKER).write_text(json.dumps(spec))
    assert demo.assets_ready(tmp_path, spec)
    other = demo.asset_spec(demo.parse_args(["--assets-only", "--n-train", "100"]), demo.ModelSize())
    assert not demo.assets_ready(tmp_path, other), "built with other settings"
    (sft / "model.safetensors").unlink()
    assert not demo.assets_ready(tmp_path, spec)
