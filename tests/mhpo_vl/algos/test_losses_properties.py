"""Hypothesis properties of every policy loss: finite at extreme ratios, masking, padding, bf16."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mhpo_vl.algos import POLICY_LOSSES, mhpo_loss
from mhpo_vl.algos.aggregation import AGG_MODES

FAST = settings(max_examples=50, deadline=None)
NAMES = sorted(POLICY_LOSSES)


@st.composite
def batches(draw, max_abs_log_ratio: float = 1e4, min_b: int = 1):
    """(logp, old_logp, advantages, mask): float32, log-ratios in [-max, max], >= 1 valid token."""
    b, t = draw(st.integers(min_b, 3)), draw(st.integers(1, 6))
    floats = st.floats(-max_abs_log_ratio, max_abs_log_ratio, allow_nan=False, width=32)
    extremes = st.sampled_from([max_abs_log_ratio, -max_abs_log_ratio, 0.0])
    x = draw(st.lists(st.one_of(floats, extremes), min_size=b * t, max_size=b * t))
    old = draw(st.lists(st.floats(-30, 0, width=32), min_size=b * t, max_size=b * t))
    mask = draw(st.lists(st.booleans(), min_size=b * t, max_size=b * t))
    mask[0] = True
    adv = draw(st.lists(st.floats(-5, 5, width=32), min_size=b, max_size=b))
    old_t = torch.tensor(old).view(b, t)
    return old_t + torch.tensor(x).view(b, t), old_t, torch.tensor(adv), torch.tensor(mask).view(b, t)


def run(name, logp, old, adv, mask, **kw):
    logp = logp.detach().clone().requires_grad_()
    loss, metrics = POLICY_LOSSES[name](logp, old, adv, mask, **kw)
    (grad,) = torch.autograd.grad(loss, logp)
    return loss.detach(), grad, metrics


@FAST
@given(batches(), st.sampled_from(AGG_MODES))
def test_finite_loss_and_grads_at_any_log_ratio_with_garbage_in_masked_tokens(data, agg):
    logp, old, adv, mask = data
    logp = torch.where(mask, logp, torch.tensor(float("nan")))
    old = torch.where(mask, old, torch.tensor(float("inf")))
    for name in NAMES:
        loss, grad, metrics = run(name, logp, old, adv, mask, agg=agg)
        assert torch.isfinite(loss), name
        assert torch.isfinite(grad).all() and (grad[~mask] == 0).all(), name
        assert all(torch.isfinite(v) for v in metrics.values()), name
    for kw in ({"lfm": False}, {"dhp": False}, {"lfm": False, "dhp": False}, {"dhp_normalize": True}):
        loss, grad, _ = run("mhpo", logp, old, adv, mask, agg=agg, **kw)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), kw


@FAST
@given(st.floats(-1e4, 1e4, allow_nan=False, width=32), st.floats(0.1, 5.0))
def test_mhpo_effective_ratio_is_bounded_and_its_gradient_positive(x, c):
    logp = torch.tensor([[x]]).requires_grad_()
    loss, _ = mhpo_loss(logp, torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1), c=c, dhp=False)
    eff = -loss.item()  # exp(psi) with A = 1, one token, no hazard
    assert math.exp(-c) * (1 - 1e-6) <= eff <= math.exp(c) * (1 + 1e-6)
    loss.backward()
    if abs(x) / c < 40:  # sech^2 > 0 everywhere; in float32 1/cosh^2 underflows only near |x/c| = 44
        assert logp.grad.item() < 0


@FAST
@given(batches(max_abs_log_ratio=5.0), st.sampled_from(NAMES), st.sampled_from(AGG_MODES))
def test_masked_tokens_change_nothing(data, name, agg):
    logp, old, adv, mask = data
    loss, grad, metrics = run(name, logp, old, adv, mask, agg=agg)
    noisy_logp = torch.where(mask, logp, torch.tensor(float("-inf")))
    noisy_old = torch.where(mask, old, torch.randn_like(old) * 1e4)
    loss2, grad2, metrics2 = run(name, noisy_logp, noisy_old, adv, mask, agg=agg)
    assert torch.equal(loss, loss2) and torch.equal(grad, grad2)
    assert all(torch.equal(metrics[k], metrics2[k]) for k in metrics)


@FAST
@given(batches(max_abs_log_ratio=5.0), st.sampled_from(NAMES), st.sampled_from(AGG_MODES), st.integers(1, 5))
def test_padding_length_changes_nothing(data, name, agg, pad):
    logp, old, adv, mask = data
    kw = {"agg": agg, "max_len": 16}
    loss, grad, _ = run(name, logp, old, adv, mask, **kw)
    b = logp.shape[0]
    padded = [torch.cat([x, torch.full((b, pad), fill)], dim=1) for x, fill in ((logp, 7.0), (old, -3.0))]
    pmask = torch.cat([mask, torch.zeros(b, pad, dtype=torch.bool)], dim=1)
    loss2, grad2, _ = run(name, padded[0], padded[1], adv, pmask, **kw)
    torch.testing.assert_close(loss2, loss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad2[:, : logp.shape[1]], grad, rtol=1e-6, atol=1e-9)
    assert (grad2[:, logp.shape[1]:] == 0).all()


@FAST
@given(batches(max_abs_log_ratio=2.0), st.sampled_from(NAMES))
def test_bf16_inputs_give_the_float32_result(data, name):
    logp, old, adv, mask = data
    lb, ob, ab = logp.bfloat16(), old.bfloat16(), adv.bfloat16()
    loss_bf, grad_bf, _ = run(name, lb, ob, ab, mask)
    loss_32, grad_32, _ = run(name, lb.float(), ob.float(), ab.float(), mask)
    assert loss_bf.dtype == torch.float32 and grad_bf.dtype == torch.bfloat16
    torch.testing.assert_close(loss_bf, loss_32, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_bf.float(), grad_32.bfloat16().float(), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_rows_without_valid_tokens_contribute_zero_in_mean_over_rows(name):
    logp, old = torch.tensor([[-1.0, -2.0], [0.3, 0.1]]), torch.tensor([[-1.2, -1.9], [0.0, 0.0]])
    adv, mask = torch.tensor([1.0, 2.0]), torch.tensor([[True, True], [False, False]])
    both, grad, _ = run(name, logp, old, adv, mask, agg="seq-mean-token-mean")
    alone, _, _ = run(name, logp[:1], old[:1], adv[:1], mask[:1], agg="seq-mean-token-mean")
    assert both.item() == pytest.approx(alone.item() / 2, rel=1e-6)
    assert (grad[1] == 0).all()
