"""End-to-end RL on a tiny Qwen2.5-VL: every loss runs, metrics/checkpoints are written, resume is exact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mhpo_vl.algos import POLICY_LOSSES
from mhpo_vl.config import config_from_dict
from mhpo_vl.errors import UserError
from mhpo_vl.rewards import combine
from mhpo_vl.trainer.metrics import read_metrics
from mhpo_vl.trainer.rl import RLTrainer, run_training

REQUIRED_KEYS = {"reward/mean", "reward/std", "accuracy", "response_length/mean", "response_length/max",
                 "response_length/clipped_frac", "entropy", "grad_norm", "lr", "loss", "skipped_steps",
                 "time/rollout", "time/reward", "time/update", "tokens_per_s", "zero_variance_groups"}


@pytest.fixture(scope="module")
def easy_vqa_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("easy_vqa")
    for split, n in (("train", 24), ("test", 8)):
        subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--n", str(n),
                        "--split", split, "--output", str(out)], check=True, capture_output=True)
    return out


def _cfg(model: Path, data: Path, out: Path, **overrides: str):
    base = {
        "model": {"name_or_path": str(model), "min_pixels": 3136, "max_pixels": 3136},
        "data": {"train_dir": str(data), "eval_dir": str(data), "prompt_template": "plain", "max_prompt_tokens": 64},
        "rollout": {"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 3, "eval_batch_size": 8},
        "reward": {"components": {"accuracy": 0.9, "format_reward": 0.1}},
        "trainer": {"output_dir": str(out), "max_steps": 2, "lr": 1e-3, "lr_schedule": "constant",
                    "mixed_precision": "no", "save_every": 0, "keep_last": 2},
        "logging": {"progress_bar": False, "plots": False},
    }
    return config_from_dict(base, [f"{k}={v}" for k, v in overrides.items()])


@pytest.mark.parametrize("loss", sorted(POLICY_LOSSES))
def test_every_loss_trains_and_writes_run_dir(loss, tiny_model_dir, easy_vqa_dir, tmp_path):
    cfg = _cfg(tiny_model_dir("qwen2_5_vl"), easy_vqa_dir, tmp_path / "run", **{"algo.name": loss})
    summary = run_training(cfg)
    lines = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [m["step"] for m in lines] == [1, 2]
    assert REQUIRED_KEYS <= set(lines[0]), REQUIRED_KEYS - set(lines[0])
    assert all(0.0 <= m["reward/mean"] <= 1.0 for m in lines)
    assert (tmp_path / "run" / "checkpoints" / "step_2").is_dir()
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 2
    assert summary["algo"] == loss


def test_ppo_epochs_minibatches_and_kl(tiny_model_dir, easy_vqa_dir, tmp_path):
    # A user reward by path that varies across samples, so advantages are non-zero from the start.
    (tmp_path / "my_reward.py").write_text("def odd_length(completion, reference, **kw):\n"
                                           "    return float(len(completion) % 2)\n")
    cfg = _cfg(tiny_model_dir("qwen2_5_vl"), easy_vqa_dir, tmp_path / "run", **{
        "reward.components": f"{{'{tmp_path / 'my_reward.py'}:odd_length': 1.0}}",
        "algo.ppo_epochs": "2", "algo.mini_batch_size": "4", "trainer.micro_batch_size": "2",
        "algo.kl_coef": "0.05", "model.lora.enabled": "true", "model.lora.r": "4"})
    run_training(cfg)
    lines = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert "kl" in lines[0] and lines[0]["skipped_steps"] == 0
    # after the first of 4 optimizer steps the policy moved, so later mini-batches see ratio != 1
    assert lines[1]["loss/ratio_max"] > 1.0 or lines[1]["loss/ratio_min"] < 1.0


def test_dynamic_sampling_runs(tiny_model_dir, easy_vqa_dir, tmp_path):
    cfg = _cfg(tiny_model_dir("qwen2_5_vl"), easy_vqa_dir, tmp_path / "run", **{
        "algo.name": "dapo", "algo.dynamic_sampling": "true", "algo.dynamic_sampling_max_tries": "2"})
    run_training(cfg)
    assert "dynamic_sampling/dropped_groups" in read_metrics(tmp_path / "run" / "metrics.jsonl")[0]


def test_resume_after_kill_matches_uninterrupted_run(tiny_model_dir, easy_vqa_dir, tmp_path, monkeypatch):
    model = tiny_model_dir("qwen2_5_vl")
    full = _cfg(model, easy_vqa_dir, tmp_path / "full", **{"trainer.max_steps": "4", "trainer.save_every": "2"})
    run_training(full)
    reference = read_metrics(tmp_path / "full" / "metrics.jsonl")

    killed = _cfg(model, easy_vqa_dir, tmp_path / "killed", **{"trainer.max_steps": "4", "trainer.save_every": "2"})
    original = RLTrainer.train_step
    calls = {"n": 0}

    def dies_on_fourth_step(self):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("simulated kill")
        return original(self)

    monkeypatch.setattr(RLTrainer, "train_step", dies_on_fourth_step)
    with pytest.raises(KeyboardInterrupt):
        run_training(killed)
    monkeypatch.setattr(RLTrainer, "train_step", original)
    assert len(read_metrics(tmp_path / "killed" / "metrics.jsonl")) == 3  # step 3 logged, no checkpoint at 3

    resumed = _cfg(model, easy_vqa_dir, tmp_path / "killed", **{"trainer.max_steps": "4", "trainer.save_every": "2",
                                                                "trainer.resume": "auto"})
    run_training(resumed)
    lines = read_metrics(tmp_path / "killed" / "metrics.jsonl")
    assert [m["step"] for m in lines] == [1, 2, 3, 4]
    for got, want in zip(lines[2:], reference[2:]):
        for key in ("reward/mean", "loss", "grad_norm", "entropy", "response_length/mean", "lr"):
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-7), key


def test_nan_loss_skips_steps_then_stops(tiny_model_dir, easy_vqa_dir, tmp_path, monkeypatch):
    def nan_loss(logp, old_logp, advantages, mask, *, agg="token-mean"):
        return (logp * float("nan")).sum(), {}

    monkeypatch.setitem(POLICY_LOSSES, "nan_loss", nan_loss)
    cfg = _cfg(tiny_model_dir("qwen2_5_vl"), easy_vqa_dir, tmp_path / "run", **{
        "algo.name": "nan_loss", "trainer.max_steps": "5", "trainer.max_consecutive_bad_steps": "3"})
    before = {k: v.clone() for k, v in RLTrainer(cfg).unwrapped.state_dict().items()}
    with pytest.raises(UserError, match="3 steps in a row had a NaN/Inf"):
        run_training(cfg)
    lines = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [m["skipped_steps"] for m in lines] == [1, 2]
    from transformers import AutoModelForImageTextToText

    unchanged = AutoModelForImageTextToText.from_pretrained(tiny_model_dir("qwen2_5_vl")).state_dict()
    assert all(torch.equal(before[k], unchanged[k]) for k in unchanged)


def test_unknown_loss_hparam_names_the_key(tiny_model_dir, easy_vqa_dir, tmp_path):
    cfg = _cfg(tiny_model_dir("qwen2_5_vl"), easy_vqa_dir, tmp_path / "run", **{"algo.name": "grpo", "algo.c": "2.0"})
    with pytest.raises(UserError, match="algo.c is not a hyperparameter of grpo"):
        RLTrainer(cfg)


@pytest.mark.parametrize("hack", ["<answer></answer>", "<think>x</think><answer> </answer>", "",
                                  "<answer>red, blue, green</answer>", "<answer>A B C D</answer>"])
def test_reward_hacks_get_no_accuracy(hack):
    reward = combine({"accuracy": 0.9, "format_reward": 0.1})
    scores = reward([hack], ["red"], [{"answer_type": "choice", "choices": ["red", "blue", "green"]}])
    assert scores.components["accuracy"] == [0.0]


@pytest.mark.parametrize("micro", ["0", "4", "2"])
def test_shared_prefix_update_equals_the_full_forward_update(micro, tiny_model_dir, easy_vqa_dir, tmp_path):
    # Same seed, same rollout: loss, entropy and gradient norm of the step match whether each prompt runs
    # once for its G responses (micro-batches of whole groups: 0 or 4 rows) or every sequence runs whole
    # (micro 2 < G falls back). (Weights are not compared: Adam's first step is ~lr * sign(grad), which
    # turns rounding noise in near-zero gradients into lr-sized differences.)
    (tmp_path / "my_reward.py").write_text("def odd_length(completion, reference, **kw):\n"
                                           "    return float(len(completion) % 2)\n")
    runs = []
    for shared in ("true", "false"):
        torch.manual_seed(0)
        cfg = _cfg(tiny_model_dir("qwen2_5_vl"), easy_vqa_dir, tmp_path / shared, **{
            "trainer.shared_prefix": shared, "trainer.micro_batch_size": micro, "rollout.max_new_tokens": "6",
            "reward.components": f"{{'{tmp_path / 'my_reward.py'}:odd_length': 1.0}}"})
        trainer = RLTrainer(cfg)
        assert trainer.shared_prefix == (shared == "true")
        metrics = trainer.train_step()
        assert metrics["skipped_steps"] == 0 and metrics["reward/std"] > 0
        runs.append(metrics)
    for key in ("loss", "entropy", "grad_norm", "loss/ratio_mean", "response_length/mean"):
        assert runs[0][key] == pytest.approx(runs[1][key], rel=1e-4, abs=1e-6), key
