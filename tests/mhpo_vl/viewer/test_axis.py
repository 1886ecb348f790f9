"""Value axes of the viewer's curve panels: constant, near-constant, zero, negative and non-finite series."""

from __future__ import annotations

import math
import random
import re

import pytest

from mhpo_vl.viewer.axis import FLAT_RTOL, nice_step, value_axis
from mhpo_vl.viewer.curves import HEIGHT, PAD_B, PAD_T, curves_html, svg_chart

HAZARD = 0.26506221294403076  # loss/hazard_weight_mean of an on-policy MHPO run (logged as float32)


def _check(axis, values):
    """Invariants of every axis: ticks ascend inside [lo, hi], cover the data, labels distinct and faithful."""
    finite = [v for v in values if math.isfinite(v)]
    assert axis.lo < axis.hi and list(axis.ticks) == sorted(set(axis.ticks))
    assert axis.ticks[0] == axis.lo and axis.ticks[-1] == axis.hi
    assert axis.lo <= min(finite) and max(finite) <= axis.hi
    assert len(set(axis.labels)) == len(axis.labels) == len(axis.ticks)
    step = axis.ticks[1] - axis.ticks[0]
    assert all(abs(float(s) - t) <= 0.05 * step + 1e-12 * abs(t) for s, t in zip(axis.labels, axis.ticks))


@pytest.mark.parametrize("value,labels", [
    (0.265, ("0.255", "0.260", "0.265", "0.270", "0.275")),
    (HAZARD, ("0.255", "0.260", "0.265", "0.270", "0.275")),
    (-0.265, ("-0.275", "-0.270", "-0.265", "-0.260", "-0.255")),
    (0.0, ("-1.0", "-0.5", "0.0", "0.5", "1.0")),
    (1.0, ("0.96", "0.98", "1.00", "1.02", "1.04")),
    (123456.0, ("119456", "121456", "123456", "125456", "127456")),
    (1e-9, ("9.6e-10", "9.8e-10", "1e-9", "1.02e-9", "1.04e-9")),
])
def test_a_constant_is_centred_on_its_value_with_a_small_pad(value, labels):
    axis = value_axis([value] * 5)
    _check(axis, [value])
    assert axis.flat and axis.labels == labels and axis.ticks[2] == value  # the middle tick is the value
    if value:
        assert axis.hi - axis.lo <= 0.1 * abs(value)  # never 0.265 on -0.235..0.765
        assert (axis.lo > 0) == (value > 0) and (axis.hi < 0) == (value < 0)  # no needless zero crossing


def test_float32_noise_is_flat_but_a_real_small_change_is_zoomed_with_enough_digits():
    noisy = [0.2650621831417084, HAZARD, 0.2650621831417084]  # the same mean from two reduction orders
    assert value_axis(noisy).flat and value_axis(noisy).labels[2] == "0.265"
    near = [0.2650303840637207, 0.2650405168533325, 0.2650727331638336, 0.2650505304336548]  # a tiny CPU run
    axis = value_axis(near)
    _check(axis, near)
    assert not axis.flat and axis.labels == ("0.26502", "0.26504", "0.26506", "0.26508")
    big = [1000.001, 1000.002, 1000.003]  # spread 2e-6 of the magnitude: just above FLAT_RTOL
    assert (big[-1] - big[0]) / big[-1] > FLAT_RTOL
    axis = value_axis(big)
    _check(axis, big)
    assert not axis.flat and axis.labels[0] == "1000.0010" and axis.labels[-1] == "1000.0030"


def test_non_finite_values_are_skipped():
    assert value_axis([math.nan, 0.5, math.inf, -math.inf, 0.5]) == value_axis([0.5])
    assert value_axis([math.nan, True, None, "x"]) == value_axis([])  # type: ignore[list-item]
    assert value_axis([]).lo == 0 and value_axis([]).hi == 1


@pytest.mark.parametrize("values,labels", [
    ([0.443, 0.629], ("0.40", "0.45", "0.50", "0.55", "0.60", "0.65")),
    ([-3, 2], ("-4", "-2", "0", "2")),
    ([1, 1500], ("0", "500", "1000", "1500")),
    ([-1e-5, 1e-5], ("-1e-5", "-5e-6", "0", "5e-6", "1e-5")),
    ([-0.01, 0.01], ("-0.010", "-0.005", "0.000", "0.005", "0.010")),
])
def test_a_varying_series_gets_round_ticks(values, labels):
    axis = value_axis(values)
    _check(axis, values)
    assert not axis.flat and axis.labels == labels


def test_random_series_keep_the_invariants():
    rng = random.Random(0)
    for _ in range(500):
        scale = 10 ** rng.uniform(-8, 8)
        centre = rng.choice([0.0, rng.uniform(-1, 1) * scale * 10 ** rng.uniform(0, 7)])
        values = [centre + rng.gauss(0, scale) for _ in range(rng.randint(1, 30))]
        axis = value_axis(values)
        _check(axis, values)
        assert 3 <= len(axis.ticks) <= 7


def test_nice_step():
    assert [nice_step(x, up=True) for x in (0.0465, 0.25, 3.0, 7.0, 1.0)] == [0.05, 0.5, 5.0, 10.0, 1.0]
    assert [nice_step(x, up=False) for x in (0.006625, 0.3, 9.9, 1.0)] == [0.005, 0.2, 5.0, 1.0]


def _labels(svg: str) -> list[str]:
    return re.findall(r'text-anchor="end" font-size="9" fill="#5f6b76">([^<]*)</text>', svg)[:-1]  # less x end


def test_constant_curve_is_a_level_line_through_its_labelled_value():
    svg = svg_chart([(1.0, HAZARD), (2.0, HAZARD), (3.0, math.nan), (4.0, HAZARD)], "hazard weight")
    assert _labels(svg) == ["0.255", "0.260", "0.265", "0.270", "0.275"]
    assert "-0.235" not in svg and "0.765" not in svg
    ys = {float(p.split(",")[1]) for p in re.search(r'points="([^"]*)"', svg).group(1).split()}
    assert ys == {PAD_T + (HEIGHT - PAD_T - PAD_B) / 2}  # level, in the middle, NaN step left out
    assert 'data-y-axis="0.255062 0.275062"' in svg


def test_curves_label_large_steps_and_skip_bools():
    page = curves_html([{"step": s, "accuracy": 0.5, "entropy": True} for s in (1000, 1500)])
    assert ">step 1000<" in page and ">1500<" in page and "e+03" not in page
    assert page.count("<figure>") == 1  # a boolean is not a metric value
