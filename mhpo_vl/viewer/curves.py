"""Training curves as small inline SVG charts (no image files, no plotting library at view time)."""

from __future__ import annotations

import html
import math
from typing import Any

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


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def svg_chart(points: list[tuple[float, float]], caption: str) -> str:
    """One line chart of (step, value) points as an escaped ``<figure>`` with inline SVG."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    w, h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def sx(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * w

    def sy(y: float) -> float:
        return PAD_T + (1 - (y - y0) / (y1 - y0)) * h

    line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    dot = "" if len(points) > 1 else f'<circle cx="{sx(xs[0]):.1f}" cy="{sy(ys[0]):.1f}" r="2.5" fill="#1f77b4"/>'
    text = 'font-size="9" fill="#5f6b76"'
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{html.escape(caption)}">'
        f'<rect x="{PAD_L}" y="{PAD_T}" width="{w}" height="{h}" fill="none" stroke="#d9dee3"/>'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{line}"/>{dot}'
        f'<text x="{PAD_L - 3}" y="{PAD_T + 8}" text-anchor="end" {text}>{_fmt(y1)}</text>'
        f'<text x="{PAD_L - 3}" y="{PAD_T + h}" text-anchor="end" {text}>{_fmt(y0)}</text>'
        f'<text x="{PAD_L}" y="{HEIGHT - 4}" {text}>step {_fmt(x0)}</text>'
        f'<text x="{WIDTH - PAD_R}" y="{HEIGHT - 4}" text-anchor="end" {text}>{_fmt(x1)}</text>'
        f"</svg><figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def curves_html(history: list[dict[str, Any]], limit: int = 8) -> str:
    """Charts of the run's main metrics (``metrics.jsonl`` lines), or a note when there are none."""
    charts = []
    for key, caption in CURVES:
        points = [(float(m["step"]), float(m[key])) for m in history
                  if isinstance(m.get(key), (int, float)) and isinstance(m.get("step"), (int, float))
                  and math.isfinite(float(m[key]))]
        if points:
            charts.append(svg_chart(points, caption))
        if len(charts) >= limit:
            break
    if not charts:
        return '<p class="note">No metrics yet (metrics.jsonl is empty or missing).</p>'
    return '<div class="curves">' + "".join(charts) + "</div>"
