"""k1/k2/k3 KL estimators."""

from __future__ import annotations

import math

import pytest
import torch

from mhpo_vl.algos import kl_penalty


def test_estimators_by_hand():
    logp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]])
    d = [0.5, -1.0]
    assert kl_penalty(logp, ref, "k1").tolist()[0] == pytest.approx(d)
    assert kl_penalty(logp, ref, "k2").tolist()[0] == pytest.approx([x * x / 2 for x in d])
    assert kl_penalty(logp, ref).tolist()[0] == pytest.approx([math.exp(-x) - 1 + x for x in d])


def test_k3_is_nonnegative_finite_and_zero_on_policy():
    logp = torch.tensor([[-1.0, 3e3, -5e3]], requires_grad=True)
    ref = torch.tensor([[-1.0, 0.0, 0.0]])
    kl = kl_penalty(logp, ref)
    assert kl[0, 0].item() == 0.0 and (kl >= 0).all() and torch.isfinite(kl).all()
    kl.sum().backward()
    assert torch.isfinite(logp.grad).all() and logp.grad[0, 0].item() == 0.0


def test_mask_bf16_and_errors():
    logp = torch.tensor([[-1.0, float("nan")]], dtype=torch.bfloat16, requires_grad=True)
    ref = torch.tensor([[-1.25, float("inf")]])
    kl = kl_penalty(logp, ref, "k3", mask=torch.tensor([[1, 0]]))
    assert kl.dtype == torch.float32 and kl[0, 1].item() == 0.0
    kl.sum().backward()
    assert torch.isfinite(logp.grad.float()).all()
    with pytest.raises(ValueError, match="k4"):
        kl_penalty(logp, ref, "k4")
    with pytest.raises(ValueError, match="ref_logp shape"):
        kl_penalty(logp, ref[:, :1])
