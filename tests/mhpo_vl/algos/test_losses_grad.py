"""Gradients: MHPO against its analytic form, gradcheck in float64, and equal on-policy gradients."""

from __future__ import annotations

import math

import pytest
import torch

from mhpo_vl.algos import POLICY_LOSSES
from mhpo_vl.algos.aggregation import AGG_MODES

# Log-ratios away from every clip boundary (PPO 0.8/1.2/1.28, GMPO +-0.4) so finite differences are smooth.
LOG_R = torch.tensor([[0.05, -0.6, 0.3, 0.0, 1.1], [-0.1, 0.5, -1.5, 0.02, 9.0]], dtype=torch.float64)
MASK = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
ADV = torch.tensor([0.7, -1.3], dtype=torch.float64)
OLD = -torch.linspace(0.2, 3.0, 10, dtype=torch.float64).view(2, 5)


def grad_of(name: str, logp: torch.Tensor, old: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, **kw):
    logp = logp.detach().clone().requires_grad_()
    loss, _ = POLICY_LOSSES[name](logp, old, adv, mask, **kw)
    (grad,) = torch.autograd.grad(loss, logp)
    return grad


@pytest.mark.parametrize("kwargs", [{}, {"c": 0.8, "lam_neg": 1.4, "k_pos": 2.5}, {"dhp_normalize": True}])
def test_mhpo_gradient_is_analytic(kwargs):
    hp = {"c": 1.5, "k_pos": 1.5, "lam_pos": 1.0, "k_neg": 2.0, "lam_neg": 0.8, **kwargs}
    grad = grad_of("mhpo", OLD + LOG_R, OLD, ADV, MASK, **kwargs)
    lengths = MASK.sum(-1)
    for i in range(2):
        for t in range(5):
            if not MASK[i, t]:
                assert grad[i, t] == 0
                continue
            x, c = LOG_R[i, t].item(), hp["c"]
            psi = c * math.tanh(x / c)
            zeta = (math.log1p(math.exp(psi)) / hp["lam_pos"]) ** hp["k_pos"] + \
                (math.log1p(math.exp(-psi)) / hp["lam_neg"]) ** hp["k_neg"]
            if kwargs.get("dhp_normalize"):
                zeta -= (math.log(2) / hp["lam_pos"]) ** hp["k_pos"] + (math.log(2) / hp["lam_neg"]) ** hp["k_neg"]
            sech2 = 1.0 / math.cosh(x / c) ** 2
            want = -sech2 * math.exp(psi - zeta) * ADV[i].item() / lengths[i].item() / 2  # seq-mean over B = 2
            assert grad[i, t].item() == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize(
    "name,kwargs",
    [("grpo", {}), ("dr_grpo", {}), ("dapo", {}), ("sapo", {}), ("gmpo", {}), ("gspo", {}),
     ("gspo", {"clip_eps_low": 0.5, "clip_eps_high": 0.5}), ("mhpo", {"dhp": False}),
     ("mhpo", {"dhp": False, "lfm": False}), ("grpo", {"agg": "token-mean"})],
)
def test_gradcheck_float64(name, kwargs):
    # MHPO with DHP and CISPO stop gradients on purpose (their analytic tests cover them).
    logp = (OLD + LOG_R).clone().requires_grad_()
    adv = torch.tensor([[0.7, -0.2, 0.4, 1.0, 0.3], [-1.3, -0.5, 0.8, -1.0, 2.0]], dtype=torch.float64)
    adv = adv if name not in ("gspo", "gmpo") else ADV  # sequence-level losses take per-response advantages
    fn = POLICY_LOSSES[name]
    assert torch.autograd.gradcheck(lambda lp: fn(lp, OLD, adv, MASK, **kwargs)[0], (logp,))


def test_cispo_gradient_is_clipped_weight_times_advantage():
    grad = grad_of("cispo", OLD + LOG_R, OLD, ADV, MASK, agg="seq-mean-token-sum")
    weight = LOG_R.exp().clamp(max=6.0)
    want = torch.where(MASK, -weight * ADV[:, None] / 2, torch.zeros(()))
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("agg", AGG_MODES)
def test_same_gradient_on_policy(agg):
    """At old == new every listed loss gives GRPO's gradient under the same aggregation.

    SAPO's 4/tau makes d gate/dr = 1 at r = 1; GSPO/GMPO put each response's value on all its
    tokens, so the sequence ratio's 1/|y| per token sums back to GRPO's weight in every mode
    (all modes weigh the tokens of one response equally); MHPO needs dhp_normalize.
    """
    gen = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 7, generator=gen, dtype=torch.float64) * 3
    mask = torch.rand(4, 7, generator=gen) > 0.3
    mask[:, 0] = True
    adv = torch.randn(4, generator=gen, dtype=torch.float64)
    ref = grad_of("grpo", logp, logp, adv, mask, agg=agg)
    assert ref.abs().sum() > 0
    for name, kw in [("dapo", {}), ("dr_grpo", {}), ("sapo", {}), ("cispo", {}), ("gspo", {}), ("gmpo", {}),
                     ("mhpo", {"dhp_normalize": True})]:
        torch.testing.assert_close(grad_of(name, logp, logp, adv, mask, agg=agg, **kw), ref, msg=name)
    scale = math.exp(-((math.log(2)) ** 1.5 + (math.log(2) / 0.8) ** 2))
    torch.testing.assert_close(grad_of("mhpo", logp, logp, adv, mask, agg=agg), ref * scale)


def test_mhpo_hazards_split_by_shift_sign_not_advantage_sign():
    x = torch.tensor([[2.0, -2.0]], dtype=torch.float64)
    zeros, mask = torch.zeros_like(x), torch.ones(1, 2, dtype=torch.bool)
    pos, neg = torch.ones(1, dtype=torch.float64), -torch.ones(1, dtype=torch.float64)
    base = grad_of("mhpo", x, zeros, pos, mask)
    torch.testing.assert_close(grad_of("mhpo", x, zeros, neg, mask), -base, rtol=0, atol=0)  # same weight for A < 0
    # A stronger negative-shift hazard (lam_neg 0.8 -> 0.4) crushes the r < 1 token, barely touches r > 1.
    ratio = grad_of("mhpo", x, zeros, pos, mask, lam_neg=0.4) / base
    assert ratio[0, 0] > 0.5 and ratio[0, 1] < 1e-3
    ratio = grad_of("mhpo", x, zeros, pos, mask, lam_pos=0.5) / base
    assert ratio[0, 0] < 0.2 and ratio[0, 1] > 0.5


def test_mhpo_hazard_weight_is_constant_for_backward():
    # d/dx of -exp(psi - sg zeta) is -sech^2 * exp(psi - zeta): no d zeta / dx term.
    x = torch.tensor([[0.9]], dtype=torch.float64)
    g = grad_of("mhpo", x, torch.zeros_like(x), torch.ones(1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.bool))
    psi = 1.5 * math.tanh(0.6)
    zeta = math.log1p(math.exp(psi)) ** 1.5 + (math.log1p(math.exp(-psi)) / 0.8) ** 2
    assert g.item() == pytest.approx(-math.exp(psi - zeta) / math.cosh(0.6) ** 2, rel=1e-12)


@pytest.mark.parametrize("x", [15.0, -25.0, 40.0])
def test_mhpo_float32_gradient_stays_accurate_in_the_saturated_tail(x):
    # 1 - tanh^2 is exactly 0 here in float32; the LFM backward uses 1 / cosh^2 instead.
    g32 = grad_of("mhpo", torch.tensor([[x]]), torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1, dtype=torch.bool))
    g64 = grad_of("mhpo", torch.tensor([[x]], dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64),
                  torch.ones(1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.bool))
    assert g32.item() < 0
    assert g32.item() == pytest.approx(g64.item(), rel=1e-5)
