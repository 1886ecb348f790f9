import math
import random

from PIL import Image

from mhpo_vl.trainer.plots import PLOTS, figure, plot_metrics, smooth


def _synthetic(n: int = 60) -> list[dict]:
    rng = random.Random(0)
    records = []
    for step in range(1, n + 1):
        records.append({
            "step": step, "reward/mean": step / n + rng.gauss(0, 0.05), "reward/std": 0.2,
            "reward/accuracy": step / n, "reward/format_reward": 0.9, "accuracy": step / (2 * n),
            "response_length/mean": 4.0 + rng.random(), "response_length/max": 8,
            "grad_norm": abs(rng.gauss(1, 0.2)), "loss": rng.gauss(0, 0.1),
            "loss/hazard_weight_mean": 0.26, "loss/clip_frac": 0.01, "lr": 1e-4, "time/step": 0.3,
        })
        if step % 20 == 0:
            records[-1]["eval/accuracy"] = step / 100
    records[10]["grad_norm"] = float("nan")
    records[11]["grad_norm"] = float("inf")
    records[12]["loss"] = None
    records[13]["accuracy"] = "NaN"
    return records


def test_plots_written_for_present_metrics(tmp_path):
    paths = plot_metrics(_synthetic(), tmp_path / "plots")
    names = {p.name for p in paths}
    assert {"reward.png", "accuracy.png", "response_length.png", "grad_norm.png", "loss.png",
            "loss_stats.png", "lr.png", "timing.png"} <= names
    assert "entropy.png" not in names, "plots of absent metrics are skipped"
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 200


def test_only_reward_and_all_bad_values(tmp_path):
    records = [{"step": s, "reward/mean": 0.1 * s, "grad_norm": float("nan"), "accuracy": None}
               for s in range(5)]
    assert [p.name for p in plot_metrics(records, tmp_path)] == ["reward.png"]
    assert plot_metrics([], tmp_path / "empty") == []


def test_smooth_is_a_trailing_mean():
    assert smooth([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert all(math.isfinite(v) for v in smooth([0.5] * 100, 10))


def test_a_flat_panel_is_centred_on_its_value():
    """A metric constant up to float32 rounding is not zoomed into its noise (ticks 18.0..21.5, offset 1e-8)."""
    a, b = 0.2650621831417084, 0.26506221294403076  # the same hazard weight mean from two reduction orders
    records = [{"step": s, "loss/hazard_weight_mean": a if s % 3 else b, "loss/clip_frac": 0.0,
                "loss/ratio_max": 1.0 + s / 10} for s in range(1, 31)]
    spec = next(s for s in PLOTS if s.filename == "loss_stats.png")
    fig = figure(spec, records)
    fig.canvas.draw()
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    hazard = axes["loss/hazard_weight_mean"]
    assert [t.get_text() for t in hazard.get_yticklabels()] == ["0.255", "0.260", "0.265", "0.270", "0.275"]
    assert hazard.yaxis.get_offset_text().get_text() == ""
    assert [t.get_text() for t in axes["loss/clip_frac"].get_yticklabels()][2] == "0.0"
    assert axes["loss/ratio_max"].get_ylim()[1] - axes["loss/ratio_max"].get_ylim()[0] > 2.9  # varying: matplotlib's
