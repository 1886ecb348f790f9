"""Training curves as small inline SVG charts (no image files, no plotting library at view time)."""

from __future__ import annotations

import html
import math
from typing import Any

from mhpo_vl.viewer.axis import value_axis

# (metrics.jsonl key, caption); the first that exist are drawn, in this order.
CURVES: list[tuple[str, str]] = [
    ("reward/mean", "reward (mean)"),
    ("accuracy", "accuracy"),
    ("eval/accuracy", "eval accuracy"),
    ("loss", "loss"),
    ("grad_norm", "grad norm"),
    ("entropy", "entropy"),
    ("response_length/mean", "response length (mean)"),
    ("loss/hazard_weight_mean", "hazard weight exp(-zeta) (mean)"),
    ("loss/clip_frac", "clip fraction"),
    ("loss/ratio_max", "ratio max"),
    ("time/step", "seconds per step"),
]
WIDTH, HEIGHT, PAD_L, PAD_B, PAD_T, PAD_R = 230, 120, 42, 18, 6, 6
CHAR_W = 5  # about the width of one 9px label character, to fit the longest y label


def _step_label(x: float) -> str:
    """A step number as written (``1500``, not ``1.5e+03``)."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:.6g}"


def svg_chart(points: list[tuple[float, float]], caption: str) -> str:
    """One line chart of (step, value) points as an escaped ``<figure>`` with inline SVG.

    The value axis comes from :func:`~mhpo_vl.viewer.axis.value_axis`: round tick labels with grid
    lines, and a constant series drawn level through the middle tick, which shows its value.
    Points with a NaN or infinite coordinate are left out.
    """
    points = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    axis = value_axis(y for _, y in points)
    xs = [p[0] for p in points] or [0.0]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x1 = x0 + 1
    y0, y1 = axis.lo, axis.hi
    pad_l = max(PAD_L, 6 + CHAR_W * max(len(label) for label in axis.labels))
    w, h = WIDTH - pad_l - PAD_R, HEIGHT - PAD_T - PAD_B

    def sx(x: float) -> float:
        return pad_l + (x - x0) / (x1 - x0) * w

    def sy(y: float) -> float:
        return PAD_T + (1 - (y - y0) / (y1 - y0)) * h if y1 > y0 else PAD_T + h / 2

    text = 'font-size="9" fill="#5f6b76"'
    grid = "".join(f'<line x1="{pad_l}" x2="{pad_l + w}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eef1f4"/>'
                   for t in axis.ticks)
    labels = "".join(f'<text x="{pad_l - 3}" y="{sy(t) + 3:.1f}" text-anchor="end" {text}>{html.escape(label)}</text>'
                     for t, label in zip(axis.ticks, axis.labels))
    line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    dot = "" if len(points) != 1 else f'<circle cx="{sx(xs[0]):.1f}" cy="{sy(points[0][1]):.1f}" r="2.5" fill="#1f77b4"/>'
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{html.escape(caption)}" data-y-axis="{axis.lo:.6g} {axis.hi:.6g}">'
        f'{grid}<rect x="{pad_l}" y="{PAD_T}" width="{w}" height="{h}" fill="none" stroke="#d9dee3"/>'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{line}"/>{dot}{labels}'
        f'<text x="{pad_l}" y="{HEIGHT - 4}" {text}>step {_step_label(x0)}</text>'
        f'<text x="{WIDTH - PAD_R}" y="{HEIGHT - 4}" text-anchor="end" {text}>{_step_label(x1)}</text>'
        f"</svg><figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _number(v: Any) -> bool:
    """A finite int or float (not a bool, NaN or infinity)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def curves_html(history: list[dict[str, Any]], limit: int = 8) -> str:
    """Charts of the run's main metrics (``metrics.jsonl`` lines), or a note when there are none."""
    charts = []
    for key, caption in CURVES:
        points = [(float(m["step"]), float(m[key])) for m in history
                  if _number(m.get(key)) and _number(m.get("step"))]
        if points:
            charts.append(svg_chart(points, caption))
        if len(charts) >= limit:
            break
    if not charts:
        return '<p class="note">No metrics yet (metrics.jsonl is empty or missing).</p>'
    return '<div class="curves">' + "".join(charts) + "</div>"
