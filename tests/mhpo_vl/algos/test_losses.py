"""Policy-loss values on a hand-checked 2x3 batch, the shared contract, and input errors."""

from __future__ import annotations

import math

import pytest
import torch

from mhpo_vl.algos import POLICY_LOSSES, get_policy_loss, loss_defaults, mhpo_loss
from mhpo_vl.algos.aggregation import AGG_MODES

from . import hand

DEFAULT_AGG = {
    "mhpo": "seq-mean-token-mean", "grpo": "seq-mean-token-mean", "dr_grpo": "seq-mean-token-sum-norm",
    "dapo": "token-mean", "gspo": "seq-mean-token-mean", "sapo": "seq-mean-token-mean",
    "cispo": "token-mean", "gmpo": "seq-mean-token-mean",
}


def batch(dtype: torch.dtype = torch.float32, requires_grad: bool = False):
    logp = torch.tensor(hand.LOGP, dtype=dtype, requires_grad=requires_grad)
    return logp, torch.tensor(hand.OLD, dtype=dtype), torch.tensor(hand.ADV, dtype=dtype), torch.tensor(hand.MASK)


def test_registry_names_and_defaults():
    assert set(POLICY_LOSSES) == set(DEFAULT_AGG)
    assert POLICY_LOSSES["mhpo"] is mhpo_loss
    for name, agg in DEFAULT_AGG.items():
        assert loss_defaults(name)["agg"] == agg
    assert loss_defaults("mhpo") == {
        "c": 1.5, "k_pos": 1.5, "lam_pos": 1.0, "k_neg": 2.0, "lam_neg": 0.8, "dhp_normalize": False,
        "lfm": True, "dhp": True, "hazard": "weibull", "agg": "seq-mean-token-mean", "max_len": None,
    }


def test_grpo_by_hand():
    # row 0 (A=1):   r = e^.1, e^-.3, 1 -> -(1.105171 + 0.740818 + 1) / 3 = -0.948663 (e^-.3 < 0.8 is not clipped for A > 0)
    # row 1 (A=-.5): r = e^.5, e^-.2  -> (0.824361 + 0.409365) / 2 = 0.616863 (e^.5 > 1.2 is not clipped for A < 0)
    loss, metrics = POLICY_LOSSES["grpo"](*batch())
    assert loss.item() == pytest.approx((-0.948663 + 0.616863) / 2, abs=1e-6)
    assert metrics["clip_frac"].item() == 0.0


def test_mhpo_on_policy_weight_by_hand():
    # zeta(0) = (ln2 / 1.0)^1.5 + (ln2 / 0.8)^2 = 0.577082 + 0.750709 = 1.327791; exp(-1.327791) = 0.265062
    zeros = torch.zeros(1, 1)
    loss, metrics = mhpo_loss(zeros, zeros, torch.ones(1), torch.ones(1, 1))
    assert loss.item() == pytest.approx(-0.265062, abs=1e-6)
    assert metrics["hazard_weight_mean"].item() == pytest.approx(0.265062, abs=1e-6)
    loss, _ = mhpo_loss(zeros, zeros, torch.ones(1), torch.ones(1, 1), dhp_normalize=True)
    assert loss.item() == pytest.approx(-1.0, abs=1e-6)


@pytest.mark.parametrize("name", sorted(DEFAULT_AGG))
def test_value_matches_hand_formula_default_agg(name):
    loss, _ = POLICY_LOSSES[name](*batch())
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert loss.item() == pytest.approx(hand.expected(name, DEFAULT_AGG[name]), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("name", sorted(DEFAULT_AGG))
def test_value_matches_hand_formula_every_agg(name, agg):
    loss, _ = POLICY_LOSSES[name](*batch(torch.float64), agg=agg)
    assert loss.item() == pytest.approx(hand.expected(name, agg), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("kwargs", [dict(c=0.7, k_pos=2.0, lam_pos=0.5, k_neg=1.2, lam_neg=1.3),
                                    dict(lfm=False), dict(dhp=False), dict(lfm=False, dhp=False),
                                    dict(dhp_normalize=True)])
def test_mhpo_hparams_and_ablations_match_hand(kwargs):
    loss, _ = mhpo_loss(*batch(torch.float64), **kwargs)
    ref = dict(kwargs)
    ref["normalize"] = ref.pop("dhp_normalize", False)
    want = hand.aggregate(hand.per_token(lambda x, lp, a: hand.mhpo_token(x, a, **ref)), "seq-mean-token-mean")
    assert loss.item() == pytest.approx(want, rel=1e-10)


def test_split_clip_overrides_and_max_len():
    loss, _ = POLICY_LOSSES["grpo"](*batch(torch.float64), clip_eps=0.1, clip_eps_high=0.6)
    want = hand.aggregate(hand.per_token(lambda x, lp, a: hand.ppo_token(math.exp(x), a, 0.1, 0.6)),
                          "seq-mean-token-mean")
    assert loss.item() == pytest.approx(want, rel=1e-10)
    loss, _ = POLICY_LOSSES["dr_grpo"](*batch(torch.float64), max_len=7)
    assert loss.item() == pytest.approx(hand.expected("dr_grpo", "seq-mean-token-sum-norm") * 3 / 7, rel=1e-10)


@pytest.mark.parametrize("name", sorted(DEFAULT_AGG))
def test_metrics_are_detached_scalars(name):
    logp, old, adv, mask = batch(requires_grad=True)
    loss, metrics = POLICY_LOSSES[name](logp, old, adv, mask)
    assert loss.requires_grad
    assert {"ratio_mean", "ratio_min", "ratio_max", "ratio_far_frac"} <= set(metrics)
    for key, value in metrics.items():
        assert isinstance(value, torch.Tensor) and value.dim() == 0 and not value.requires_grad, key
        assert math.isfinite(value.item()), key
    ratios = [math.exp(x) for row in hand.log_ratios() for x in row if x is not None]
    assert metrics["ratio_min"].item() == pytest.approx(min(ratios), rel=1e-6)
    assert metrics["ratio_max"].item() == pytest.approx(max(ratios), rel=1e-6)
    assert metrics["ratio_mean"].item() == pytest.approx(sum(ratios) / len(ratios), rel=1e-6)


@pytest.mark.parametrize("name", sorted(DEFAULT_AGG))
def test_ratio_far_frac_is_the_share_of_valid_tokens_with_large_log_ratio(name):
    log_r = torch.tensor([[0.1, -0.35, 0.0, 0.25], [-0.1, 0.5, 3.0, -7.0]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    _, metrics = POLICY_LOSSES[name](log_r, torch.zeros_like(log_r), torch.tensor([1.0, -1.0]), mask)
    assert metrics["ratio_far_frac"].item() == pytest.approx(3 / 6)  # -0.35, 0.25, 0.5; masked 3.0, -7.0 ignored


def test_clip_fractions_count_the_zero_gradient_tokens():
    logp = torch.tensor([[0.5, -0.5, 0.0, 0.1]])
    old = torch.zeros(1, 4)
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    _, m = POLICY_LOSSES["grpo"](logp, old, adv, torch.ones(1, 4))
    assert (m["clip_frac_high"].item(), m["clip_frac_low"].item(), m["clip_frac"].item()) == (0.25, 0.25, 0.5)
    _, m = mhpo_loss(torch.tensor([[3.0, -3.0, 0.0, 1.0]]), old, adv, torch.ones(1, 4))
    assert m["lfm_saturated_frac"].item() == pytest.approx(0.5)  # |psi| = 1.5 tanh(2) = 1.446 > 1.35 twice


@pytest.mark.parametrize("name", sorted(DEFAULT_AGG))
def test_unknown_hparam_raises_type_error_naming_it(name):
    with pytest.raises(TypeError, match="clip_epsilon"):
        POLICY_LOSSES[name](*batch(), clip_epsilon=0.2)
    with pytest.raises(ValueError, match="agg"):
        POLICY_LOSSES[name](*batch(), agg="token-sum")


def test_bad_shapes_and_values_raise_clear_errors():
    logp, old, adv, mask = batch()
    with pytest.raises(ValueError, match="old_logp shape"):
        mhpo_loss(logp, old[:, :2], adv, mask)
    with pytest.raises(ValueError, match="advantages shape"):
        mhpo_loss(logp, old, adv[:1], mask)
    with pytest.raises(ValueError, match="logp must be"):
        mhpo_loss(logp[0], old[0], adv, mask[0])
    with pytest.raises(ValueError, match="lam_neg"):
        mhpo_loss(logp, old, adv, mask, lam_neg=0.0)
    with pytest.raises(ValueError, match="hazard"):
        mhpo_loss(logp, old, adv, mask, hazard="gompertz")
    with pytest.raises(ValueError, match="clip_eps_high"):
        POLICY_LOSSES["dapo"](logp, old, adv, mask, clip_eps_high=-1.0)
    with pytest.raises(ValueError, match="tau_neg"):
        POLICY_LOSSES["sapo"](logp, old, adv, mask, tau_neg=0)
    with pytest.raises(KeyError, match="did you mean 'grpo'"):
        get_policy_loss("grop")


def test_per_token_advantages_equal_broadcast_per_response():
    logp, old, adv, mask = batch()
    for name, fn in POLICY_LOSSES.items():
        a, _ = fn(logp, old, adv, mask)
        b, _ = fn(logp, old, adv[:, None].expand(2, 3).clone(), mask)
        assert a.item() == pytest.approx(b.item(), rel=1e-6), name


def test_empty_rows_contribute_zero():
    logp, old, adv, _ = batch()
    mask = torch.tensor([[True, True, True], [False, False, False]])
    for name, fn in POLICY_LOSSES.items():
        loss, metrics = fn(logp.clone().requires_grad_(), old, adv, mask)
        assert torch.isfinite(loss), name
        assert all(torch.isfinite(v) for v in metrics.values()), name
    empty = torch.zeros(2, 3, dtype=torch.bool)
    for name, fn in POLICY_LOSSES.items():
        loss, metrics = fn(logp, old, adv, empty)
        assert loss.item() == 0.0 and metrics["ratio_max"].item() == 1.0, name
