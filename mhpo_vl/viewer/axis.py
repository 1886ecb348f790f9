"""Value axes for small charts: a range with round, distinct tick labels for any series of numbers.

Used by the viewer's SVG curves and by the run's PNG plots (where matplotlib, left alone, zooms a flat
series into its float noise). A flat series (constant, or varying only by float32 rounding) gets an axis
centred on its value with a small relative pad, so it is drawn as a level line labelled with the value,
never e.g. 0.265 on a -0.235..0.765 axis. NaN and infinite values are left out.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass

# A series whose spread is at most this fraction of its magnitude is flat: float32 rounding is ~1.2e-7
# relative, so a metric that is constant up to reduction order (e.g. a mean over a varying token count)
# stays a level line instead of a chart of noise.
FLAT_RTOL = 1e-6
FLAT_PAD = 0.025  # a flat series' tick step is about this fraction of its value (two steps each side)
TARGET_INTERVALS = 4  # about this many tick intervals for a varying series
NICE = (1.0, 2.0, 5.0, 10.0)


@dataclass(frozen=True)
class Axis:
    """An axis from ``lo`` to ``hi`` with ``ticks`` (inside it, ascending) and their ``labels``."""

    lo: float
    hi: float
    ticks: tuple[float, ...]
    labels: tuple[str, ...]
    flat: bool  # the series was drawn as constant (axis centred on its value)


def nice_step(raw: float, *, up: bool) -> float:
    """The round step (1, 2 or 5 times a power of ten) nearest ``raw > 0``: the next above if ``up``, else below."""
    exponent = math.floor(math.log10(raw))
    scale = 10.0 ** exponent
    fraction = raw / scale
    if up:
        mantissa = next(m for m in NICE if m >= fraction * (1 - 1e-9))
    else:
        mantissa = next(m for m in reversed(NICE) if m <= fraction * (1 + 1e-9))
    return _clean(mantissa * scale)


def _clean(x: float) -> float:
    """``x`` rounded to 12 significant digits (k * step leaves float dust like 0.30000000000000004)."""
    return float(f"{x:.12g}")


def format_tick(x: float, precision: int, fixed: bool) -> str:
    """``x`` with ``precision`` decimals (``fixed``) or significant digits (short exponent, ``1e-6``); never ``-0``."""
    if fixed:
        text = f"{x:.{precision}f}"
    else:
        text = f"{x:.{max(1, precision)}g}"
        if "e" in text:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}e{int(exponent)}"
    return text.lstrip("-") if float(text) == 0 else text


def tick_labels(ticks: tuple[float, ...], step: float) -> tuple[str, ...]:
    """The shortest labels that are all distinct and each within 5% of a ``step`` of its tick.

    Fixed decimals (the same number on every tick) while the ticks are between 1e-4 and 1e6 in size,
    significant digits with an exponent beyond that.
    """
    biggest = max(abs(t) for t in ticks)
    fixed = 1e-4 <= biggest < 1e6
    for precision in range(0 if fixed else 1, 18):
        labels = tuple(format_tick(t, precision, fixed) for t in ticks)
        if len(set(labels)) == len(labels) and all(abs(float(s) - t) <= 0.05 * step for s, t in zip(labels, ticks)):
            return labels
    return tuple(repr(t) for t in ticks)


def _plain_axis(lo: float, hi: float) -> Axis:
    """Fallback for spans that round steps cannot cover (near the float limits): the data's own ends."""
    ticks = (lo, hi) if hi > lo else (lo,)
    return Axis(lo, hi, ticks, tuple(repr(t) for t in ticks), flat=hi == lo)


def _flat_axis(value: float) -> Axis:
    pad = FLAT_PAD * abs(value)
    step = nice_step(pad, up=False) if pad >= sys.float_info.min else 0.5  # zero (or subnormal): -1..1
    ticks = tuple(_clean(value + k * step) if k else value for k in range(-2, 3))
    if not all(map(math.isfinite, ticks)):
        return _plain_axis(value, value)
    return Axis(ticks[0], ticks[-1], ticks, tick_labels(ticks, step), flat=True)


def value_axis(values: Iterable[float]) -> Axis:
    """The axis for the finite ``values``: round ticks covering them, or a centred one when they are flat.

    No finite value gives the axis 0..1.
    """
    finite = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
              and math.isfinite(v)]
    if not finite:
        return Axis(0.0, 1.0, (0.0, 1.0), ("0", "1"), flat=False)
    lo, hi = min(finite), max(finite)
    if hi - lo <= FLAT_RTOL * max(abs(lo), abs(hi)):
        return _flat_axis(lo + (hi - lo) / 2)
    span = hi - lo
    if not math.isfinite(span):
        return _plain_axis(lo, hi)
    step = nice_step(span / TARGET_INTERVALS, up=True)
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    ticks = tuple(_clean(k * step) for k in range(first, last + 1))
    if not all(map(math.isfinite, ticks)):
        return _plain_axis(lo, hi)
    return Axis(ticks[0], ticks[-1], ticks, tick_labels(ticks, step), flat=False)
