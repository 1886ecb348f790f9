"""The loud stop: a run whose engine samples from other weights than the trainer's ends with a clear error.

Issue 27 item 8: a LoRA q/v-only vLLM run exited 0 with rollout/logprob_abs_diff_mean 5.9 at step 1 and 11
after. The metrics here are built as the trainer builds them (rollout_is_weights, then reduce_metrics).
"""

from __future__ import annotations

import pytest
import torch

from mhpo_vl.algos.rollout_is import rollout_is_weights
from mhpo_vl.config import config_from_dict
from mhpo_vl.errors import ConfigError, UserError
from mhpo_vl.trainer.metrics import reduce_metrics
from mhpo_vl.trainer.mismatch_guard import MISMATCH_KEY, check_rollout_mismatch


def _step_metrics(shift: float) -> dict[str, float]:
    """One step's reduced metrics with the sampler ``shift`` nats per token away from the trainer. (4, 6) tokens."""
    torch.manual_seed(0)
    trainer = -torch.rand(4, 6) * 3
    sampler = trainer - shift * torch.sign(torch.randn(4, 6))
    mask = torch.ones(4, 6)
    mask[1, 4:] = 0
    _, stats = rollout_is_weights(trainer, sampler, mask)
    tensors = {f"rollout/{k}": v for k, v in stats.items()}
    tensors.update({"loss": torch.tensor(0.1), "reward/mean": torch.tensor(0.5)})
    return reduce_metrics(tensors)


def test_absurd_mismatch_stops_the_run_naming_the_key():
    metrics = _step_metrics(5.9)
    assert metrics[MISMATCH_KEY] == pytest.approx(5.9)
    with pytest.raises(UserError, match=r"step 1: .* 5\.9 nats .*algo\.max_rollout_mismatch = 1"):
        check_rollout_mismatch(metrics, 1.0, step=1)


def test_numerical_mismatch_passes():
    for shift in (0.0, 1e-6, 1e-2, 0.5):
        check_rollout_mismatch(_step_metrics(shift), 1.0, step=3)


def test_non_finite_mismatch_stops_and_zero_limit_never_stops():
    metrics = {**_step_metrics(0.0), MISMATCH_KEY: float("nan")}
    with pytest.raises(UserError, match="nan nats"):
        check_rollout_mismatch(metrics, 1.0, step=2)
    check_rollout_mismatch(_step_metrics(11.0), 0.0, step=2)  # algo.max_rollout_mismatch=0: off


def test_the_trainer_sampling_itself_has_nothing_to_check():
    check_rollout_mismatch(reduce_metrics({"loss": torch.tensor(3.0)}), 1.0, step=1)


def test_the_limit_is_a_validated_config_key():
    assert config_from_dict({}).algo.max_rollout_mismatch == 1.0
    assert config_from_dict({}, ["algo.max_rollout_mismatch=0.5"]).algo.max_rollout_mismatch == 0.5
    with pytest.raises(ConfigError, match="algo.max_rollout_mismatch"):
        config_from_dict({}, ["algo.max_rollout_mismatch=-1"])
