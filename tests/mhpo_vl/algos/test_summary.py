"""step_summary: metric tensors of a step -> floats."""

from __future__ import annotations

import doctest

import pytest
import torch

import mhpo_vl.algos.summary as summary_module
from mhpo_vl.algos import POLICY_LOSSES, step_summary


def test_means_over_parts_with_prefix_and_missing_keys():
    parts = [{"a": torch.tensor(1.0), "b": torch.tensor(4.0)}, {"a": torch.tensor(3.0, dtype=torch.float64)}]
    assert step_summary(parts, "loss/") == {"loss/a": 2.0, "loss/b": 4.0}
    assert step_summary([]) == {}


def test_summarises_real_loss_metrics():
    logp = torch.zeros(2, 3, requires_grad=True)
    _, metrics = POLICY_LOSSES["mhpo"](logp, torch.zeros(2, 3), torch.ones(2), torch.ones(2, 3))
    out = step_summary([metrics])
    assert out["ratio_mean"] == 1.0 and out["hazard_weight_mean"] == pytest.approx(0.265062, abs=1e-6)
    assert all(isinstance(v, float) for v in out.values())


def test_doctest():
    assert doctest.testmod(summary_module).failed == 0
