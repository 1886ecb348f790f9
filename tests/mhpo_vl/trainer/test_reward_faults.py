"""Reward failures in training: counted in metrics.jsonl, the run survives hangs, too many failures stop it,
and every rank takes the same stop decision."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mhpo_vl.config import config_from_dict
from mhpo_vl.errors import UserError
from mhpo_vl.rewards import BatchScores
from mhpo_vl.rewards.pool import get_pool
from mhpo_vl.trainer.metrics import read_metrics
from mhpo_vl.trainer.reward_faults import RewardFaults
from mhpo_vl.trainer.rl import RLTrainer
from tests.mhpo_vl.trainer.distributed import free_port

BIN = Path(sys.executable).parent

# Hangs on every third call, counted across worker processes with a locked counter file; each hang is
# written to hung.log first, so the test knows exactly how many timeouts the metrics must show.
HANGS_ON_A_THIRD = '''
import fcntl, os, time
HERE = os.path.dirname(os.path.abspath(__file__))

def hangs_on_a_third(completion, reference, **fields):
    with open(os.path.join(HERE, "calls"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        n = len(fh.read()) + 1
        fh.write("x")
    if n % 3 == 0:
        with open(os.path.join(HERE, "hung.log"), "a") as log:
            log.write(f"{fields.get('id')}\\n")
        while True:
            time.sleep(3600)
    return 1.0

def always_raises(completion, reference):
    raise RuntimeError("grader service down")
'''


def _scores(n: int, failed: int, name: str = "a", kind: str = "timeouts") -> BatchScores:
    counts = {name: failed}
    zero = {name: 0}
    return BatchScores(total=[0.0] * n, components={name: [0.0] * n}, failed=failed,
                       timeouts_by=counts if kind == "timeouts" else zero,
                       errors_by=counts if kind == "errors" else zero)


def test_settle_sums_batches_reports_and_resets():
    faults = RewardFaults(["a"])
    faults.add(_scores(4, 1))
    faults.add(_scores(4, 2, kind="errors"))  # a second dynamic-sampling batch in the same step
    assert faults.settle(None, 0.5, step=1) == {"reward/failed_frac": 3 / 8, "reward/a/timeouts": 1.0,
                                                "reward/a/errors": 2.0}
    assert faults.settle(None, 0.5, step=2)["reward/a/timeouts"] == 0.0


def test_settle_stops_above_the_fraction_with_a_clear_message():
    faults = RewardFaults(["a"])
    faults.add(_scores(4, 3))
    with pytest.raises(UserError, match=r"step 7: rewards failed on 3 of 4 samples \(75%; a: 3 timeouts, 0 errors\)"
                                        r".*trainer.max_reward_error_frac=0.5"):
        faults.settle(None, 0.5, step=7)
    faults.add(_scores(4, 4))
    assert faults.settle(None, 1.0, step=8)["reward/failed_frac"] == 1.0  # 1.0 never stops


AGREEMENT = '''
from accelerate import Accelerator
from mhpo_vl.errors import UserError
from mhpo_vl.rewards import BatchScores
from mhpo_vl.trainer.reward_faults import RewardFaults

acc = Accelerator(cpu=True)
failed = 4 if acc.process_index == 1 else 0  # alone, rank 0 would go on and rank 1 would stop
for limit in (0.4, 0.6):
    faults = RewardFaults(["a"])
    faults.add(BatchScores(total=[0.0] * 4, components={"a": [0.0] * 4}, failed=failed,
                           timeouts_by={"a": failed}, errors_by={"a": 0}))
    try:
        metrics = faults.settle(acc, limit, step=1)
        print(f"RESULT rank={acc.process_index} limit={limit} go timeouts={metrics['reward/a/timeouts']:g}", flush=True)
    except UserError:
        print(f"RESULT rank={acc.process_index} limit={limit} stop", flush=True)
acc.end_training()  # destroy the process group: gloo's threads left at exit can abort a rank (SIGABRT)
'''


@pytest.mark.skipif(shutil.which("accelerate", path=str(BIN)) is None, reason="accelerate CLI not installed")
def test_every_rank_takes_the_same_stop_decision(tmp_path):
    script = tmp_path / "agree.py"
    script.write_text(AGREEMENT)
    cmd = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()), str(script)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = sorted(re.findall(r"RESULT rank=\d limit=[\d.]+ (?:stop|go timeouts=\d+)", proc.stdout))
    assert lines == ["RESULT rank=0 limit=0.4 stop", "RESULT rank=0 limit=0.6 go timeouts=4",
                     "RESULT rank=1 limit=0.4 stop", "RESULT rank=1 limit=0.6 go timeouts=4"], proc.stdout


@pytest.fixture(scope="module")
def easy_vqa_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("easy_vqa")
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--n", "16",
                    "--output", str(out)], check=True, capture_output=True)
    return out


def _recipe(model: Path, data: Path, out: Path, reward: dict, **trainer) -> dict:
    return {
        "model": {"name_or_path": str(model), "min_pixels": 3136, "max_pixels": 3136},
        "data": {"train_dir": str(data), "prompt_template": "plain", "max_prompt_tokens": 64},
        "rollout": {"prompts_per_step": 2, "group_size": 3, "max_new_tokens": 3},
        "reward": reward,
        "trainer": {"output_dir": str(out), "max_steps": 2, "lr": 1e-3, "lr_schedule": "constant",
                    "mixed_precision": "no", **trainer},
        "logging": {"progress_bar": False, "plots": False},
    }


def test_training_survives_a_reward_that_hangs_on_a_third_of_the_samples(tiny_model_dir, easy_vqa_dir, tmp_path):
    user = tmp_path / "user_reward.py"
    user.write_text(HANGS_ON_A_THIRD)
    name = f"{user}:hangs_on_a_third"
    recipe = tmp_path / "recipe.yaml"
    reward = {"components": {"accuracy": 0.9, "format_reward": 0.1, name: 0.5}, "timeouts": {name: 1}}
    recipe.write_text(yaml.safe_dump(_recipe(tiny_model_dir("qwen2_5_vl"), easy_vqa_dir, tmp_path / "run", reward)))
    exe = [str(BIN / "mhpo-vl")] if (BIN / "mhpo-vl").exists() else [sys.executable, "-m", "mhpo_vl"]
    proc = subprocess.run([*exe, "train", str(recipe)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [m["step"] for m in lines] == [1, 2]
    hung = (tmp_path / "hung.log").read_text().split()
    assert len(hung) == 12 // 3  # 2 steps x 6 samples, every third call
    assert sum(m[f"reward/{name}/timeouts"] for m in lines) == len(hung)
    assert all(m[f"reward/{name}/errors"] == 0 and m["reward/accuracy/timeouts"] == 0 for m in lines)
    assert [m["reward/failed_frac"] for m in lines] == [2 / 6, 2 / 6]
    assert "timed out on record" in proc.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 2


def test_workers_are_warm_before_step_one_and_most_failing_stops_the_run(tiny_model_dir, easy_vqa_dir, tmp_path):
    user = tmp_path / "user_reward.py"
    user.write_text(HANGS_ON_A_THIRD)
    name = f"{user}:always_raises"
    reward = {"components": {"accuracy": 1.0, name: 1.0}}
    cfg = config_from_dict(_recipe(tiny_model_dir("qwen2_5_vl"), easy_vqa_dir, tmp_path / "run", reward,
                                   max_reward_error_frac=0.5))
    trainer = RLTrainer(cfg)
    pool = next(c.pool for c in trainer.reward.components if c.name == name)
    assert pool is not None and len(pool._idle) == pool.size  # user code: processes, started before step 1
    assert len(get_pool()._idle) == get_pool().size  # math-verify workers too
    with pytest.raises(UserError, match=r"step 1: rewards failed on 6 of 6 samples \(100%; .*always_raises: "
                                        r"0 timeouts, 6 errors\)"):
        trainer.train()
    metrics = tmp_path / "run" / "metrics.jsonl"
    assert not metrics.exists() or not read_metrics(metrics)
