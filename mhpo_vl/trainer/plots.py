"""PNG plots of a run's metrics (reward, accuracy, response length, grad norm, loss stats, timing).

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend change). Each series is
drawn raw (faint) plus a trailing moving average; missing, null, NaN and infinite values are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mhpo_vl.viewer.axis import value_axis

MAX_SMOOTH_WINDOW = 50
SPARSE_POINTS = 20  # series with at most this many points are drawn as markers, unsmoothed


@dataclass(frozen=True)
class PlotSpec:
    """One PNG: explicit ``keys`` plus every key starting with ``prefix`` (minus ``exclude``)."""

    filename: str
    title: str
    ylabel: str
    keys: tuple[str, ...] = ()
    prefix: str = ""
    exclude: tuple[str, ...] = ()
    panels: bool = False  # one sub-plot per key (for series on different scales)
    suffixes: tuple[str, ...] = ()  # prefix-matched keys must end with one of these (when given)
    exclude_suffixes: tuple[str, ...] = ()


_REWARD_FAULTS = ("/timeouts", "/errors", "/failed_frac")
PLOTS: tuple[PlotSpec, ...] = (
    PlotSpec("reward.png", "Reward (mean, band ± std, and components)", "reward",
             keys=("reward/mean",), prefix="reward/", exclude=("reward/std",), exclude_suffixes=_REWARD_FAULTS),
    PlotSpec("reward_faults.png", "Reward calls that timed out or failed (samples per step)", "", panels=True,
             prefix="reward/", suffixes=_REWARD_FAULTS),
    PlotSpec("accuracy.png", "Accuracy", "accuracy", keys=("accuracy", "eval/accuracy")),
    PlotSpec("response_length.png", "Response length", "tokens",
             keys=("response_length/mean", "response_length/max")),
    PlotSpec("grad_norm.png", "Gradient norm (before clipping)", "grad norm", keys=("grad_norm",)),
    PlotSpec("loss.png", "Policy loss", "loss", keys=("loss",)),
    PlotSpec("loss_stats.png", "Loss statistics", "", prefix="loss/", panels=True),
    PlotSpec("entropy.png", "Token entropy", "nats", keys=("entropy",)),
    PlotSpec("lr.png", "Learning rate", "lr", keys=("lr",)),
    PlotSpec("batch.png", "Batch statistics", "", panels=True,
             keys=("response_length/clipped_frac", "zero_variance_groups", "skipped_steps", "tokens_per_s")),
    PlotSpec("timing.png", "Seconds per phase", "s", prefix="time/"),
)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _points(metrics: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) where ``key`` has a finite value; the record index stands in for a missing step."""
    xs, ys = [], []
    for index, record in enumerate(metrics):
        y = _finite(record.get(key))
        if y is None:
            continue
        x = _finite(record.get("step"))
        xs.append(index if x is None else x)
        ys.append(y)
    return xs, ys


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average over ``window`` values (shorter at the start)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _matches(spec: PlotSpec, key: str) -> bool:
    if not key.startswith(spec.prefix) or key.endswith(spec.exclude_suffixes):
        return False
    return not spec.suffixes or key.endswith(spec.suffixes)


def _keys(spec: PlotSpec, metrics: Sequence[Mapping[str, Any]]) -> list[str]:
    keys = list(spec.keys)
    if spec.prefix:
        found = sorted({k for r in metrics for k in r if _matches(spec, k)})
        keys += [k for k in found if k not in keys]
    return [k for k in keys if k not in spec.exclude]


def _draw_series(ax: Any, xs: list[float], ys: list[float], label: str, color: Any) -> None:
    if len(ys) <= SPARSE_POINTS:
        ax.plot(xs, ys, marker="o", markersize=3, color=color, label=label)
        return
    window = min(MAX_SMOOTH_WINDOW, max(2, len(ys) // 10))
    ax.plot(xs, ys, color=color, alpha=0.3, linewidth=0.8)
    ax.plot(xs, smooth(ys, window), color=color, linewidth=1.6, label=f"{label} (avg {window})")


def _draw_std_band(ax: Any, metrics: Sequence[Mapping[str, Any]], color: Any) -> None:
    """Shade reward/mean ± reward/std where both are finite."""
    xs, lo, hi = [], [], []
    for index, record in enumerate(metrics):
        mean, std = _finite(record.get("reward/mean")), _finite(record.get("reward/std"))
        if mean is None or std is None:
            continue
        x = _finite(record.get("step"))
        xs.append(index if x is None else x)
        lo.append(mean - std)
        hi.append(mean + std)
    if xs:
        ax.fill_between(xs, lo, hi, color=color, alpha=0.12, linewidth=0)


def _flat_y_axis(ax: Any) -> None:
    """Centre the y axis on a flat panel's value (constant up to float32 rounding), labelled with it.

    matplotlib copes with an exactly constant series, but zooms a series varying by ~1e-8 into ticks
    like ``18.0 .. 21.5`` under an offset ``1e-8+2.65062e-1``; :func:`value_axis` calls such a series flat.
    """
    axis = value_axis(ax.dataLim.intervaly)
    if axis.flat:
        ax.set_ylim(axis.lo, axis.hi)
        ax.set_yticks(axis.ticks, labels=axis.labels)


def figure(spec: PlotSpec, metrics: Sequence[Mapping[str, Any]]) -> Figure | None:
    """The figure for ``spec`` (on an Agg canvas), or None when none of its metrics has a finite value."""
    series = [(k, *_points(metrics, k)) for k in _keys(spec, metrics)]
    series = [s for s in series if s[2]]
    if not series:
        return None
    colors = matplotlib.colormaps["tab10"]
    n_panels = len(series) if spec.panels else 1
    cols = min(3, n_panels)
    rows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(5.5 * cols, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for i, (key, xs, ys) in enumerate(series):
        ax = axes[i if spec.panels else 0]
        if key == "reward/mean" and not spec.panels:
            _draw_std_band(ax, metrics, colors(i))
        _draw_series(ax, xs, ys, key, colors(0 if spec.panels else i))
        if spec.panels:
            ax.set_title(key, fontsize=10)
    for ax in axes[:n_panels]:
        _flat_y_axis(ax)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if spec.ylabel:
            ax.set_ylabel(spec.ylabel)
        if not spec.panels:
            ax.legend(fontsize=8)
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    fig.suptitle(spec.title)
    return fig


def _render(spec: PlotSpec, metrics: Sequence[Mapping[str, Any]], out: Path) -> bool:
    """Draw ``spec`` into ``out``; False (nothing written) when none of its metrics has a finite value."""
    fig = figure(spec, metrics)
    if fig is None:
        return False
    fig.savefig(out, dpi=100)
    return True


def plot_metrics(metrics: Sequence[Mapping[str, Any]], out_dir: str | Path,
                 specs: Sequence[PlotSpec] = PLOTS) -> list[Path]:
    """Write one PNG per spec whose metrics are present into ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in specs:
        path = out_dir / spec.filename
        if _render(spec, metrics, path):
            written.append(path)
    return written
