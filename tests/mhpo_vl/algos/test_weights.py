"""token_weights: the per-token weight each loss applies, checked against the loss's own gradient."""

from __future__ import annotations

import math

import pytest
import torch

from mhpo_vl.algos import POLICY_LOSSES, TOKEN_WEIGHTS, WEIGHT_KINDS, token_weights


def _inputs(seed: int = 0, b: int = 4, t: int = 6):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(b, t, generator=g) * 3
    logp = old + torch.randn(b, t, generator=g) * 0.6
    adv = torch.tensor([1.0, -1.0, 0.5, -2.0])[:b]
    mask = torch.ones(b, t)
    mask[0, 4:] = 0
    mask[2, 2:] = 0
    return logp, old, adv, mask


def _per_token_grad(name: str, logp, old, adv, mask, **hp) -> torch.Tensor:
    x = logp.clone().requires_grad_(True)
    loss, _ = POLICY_LOSSES[name](x, old, adv, mask, **hp)
    loss.backward()
    return x.grad


def test_every_loss_has_a_weight_and_a_legend():
    assert set(TOKEN_WEIGHTS) == set(POLICY_LOSSES) == set(WEIGHT_KINDS)


@pytest.mark.parametrize("name", sorted(POLICY_LOSSES))
def test_weights_are_zero_on_masked_tokens_and_finite(name):
    logp, old, adv, mask = _inputs()
    logp[0, 5] = float("nan")  # masked garbage must not leak
    w = token_weights(name, logp, old, adv, mask)
    assert w.shape == logp.shape and torch.isfinite(w).all()
    assert (w[mask == 0] == 0).all()


def test_mhpo_weight_on_policy_and_normalized():
    logp, _, adv, mask = _inputs()
    w = token_weights("mhpo", logp, logp, adv, mask)
    zeta0 = (math.log(2) / 1.0) ** 1.5 + (math.log(2) / 0.8) ** 2.0
    assert torch.allclose(w[mask.bool()], torch.full_like(w[mask.bool()], math.exp(-zeta0)), atol=1e-6)
    assert abs(math.exp(-zeta0) - 0.265) < 1e-3
    wn = token_weights("mhpo", logp, logp, adv, mask, dhp_normalize=True)
    assert torch.allclose(wn[mask.bool()], torch.ones_like(wn[mask.bool()]))


def test_mhpo_weight_is_the_factor_in_the_gradient():
    # seq-mean-token-mean: d loss / d logp_t = -A * w_t * sech^2(log r / c) / (B * |y_i|)
    logp, old, adv, mask = _inputs(1)
    grad = _per_token_grad("mhpo", logp, old, adv, mask)
    w = token_weights("mhpo", logp, old, adv, mask)
    sech2 = 1.0 / torch.cosh((logp - old) / 1.5) ** 2
    expected = -adv[:, None] * w * sech2 / (mask.shape[0] * mask.sum(1, keepdim=True))
    assert torch.allclose(grad * mask, expected * mask, atol=1e-6)


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "dapo", "gmpo"])
def test_clip_mask_is_one_exactly_where_the_gradient_passes(name):
    logp, old, adv, mask = _inputs(2)
    logp = old + torch.linspace(-0.9, 0.9, logp.numel()).reshape(logp.shape)  # many tokens outside the clip
    grad = _per_token_grad(name, logp, old, adv, mask)
    w = token_weights(name, logp, old, adv, mask)
    valid = mask.bool()
    assert set(w[valid].unique().tolist()) == {0.0, 1.0}
    if name == "gmpo":  # gradient of the response's geometric mean: zero per token exactly where clipped
        assert ((grad[valid] == 0) == (w[valid] == 0)).all()
    else:
        assert ((grad[valid].abs() > 0) == (w[valid] == 1)).all()


def test_gspo_clip_mask_is_per_response():
    logp, old, adv, mask = _inputs(3)
    w = token_weights("gspo", logp, old, adv, mask)
    for i in range(logp.shape[0]):
        row = w[i][mask[i].bool()]
        assert (row == row[0]).all()
    grad = _per_token_grad("gspo", logp, old, adv, mask)
    for i in range(logp.shape[0]):
        valid = mask[i].bool()
        assert bool((grad[i][valid].abs() > 0).any()) == bool(w[i][valid][0] == 1)


def test_cispo_weight_is_the_clipped_is_weight_in_the_gradient():
    # token-mean: d loss / d logp_t = -clip(r) * A / n_tokens
    logp, old, adv, mask = _inputs(4)
    logp = logp + 2.0 * (torch.arange(logp.shape[1]) % 2)  # some ratios above 1 + e_high = 6
    grad = _per_token_grad("cispo", logp, old, adv, mask)
    w = token_weights("cispo", logp, old, adv, mask)
    assert (w <= 6.0).all() and (w[mask.bool()] > 0).all()
    assert torch.allclose(grad * mask, -w * adv[:, None] / mask.sum() * mask, atol=1e-6)


def test_sapo_gate_on_policy_is_two_over_tau():
    logp, _, adv, mask = _inputs()
    w = token_weights("sapo", logp, logp, adv, mask, tau_pos=1.0, tau_neg=2.0)
    valid = mask.bool()
    expected = torch.where(adv[:, None].expand_as(w) > 0, torch.tensor(2.0), torch.tensor(1.0))
    assert torch.allclose(w[valid], expected[valid])


def test_unknown_loss_and_hparam_are_errors():
    logp, old, adv, mask = _inputs()
    with pytest.raises(KeyError, match="mhpoo"):
        token_weights("mhpoo", logp, old, adv, mask)
    with pytest.raises(ValueError, match="c must be"):
        token_weights("mhpo", logp, old, adv, mask, c=-1.0)
