"""Two CPU processes through `accelerate launch` (gloo): the documented multi-process path works.

Each launch must end cleanly: exit code 0 and no rank aborted at exit ("terminate called ..." is what
a gloo process group left to interpreter exit prints before the SIGABRT).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mhpo_vl.trainer.metrics import read_metrics
from tests.mhpo_vl.trainer.distributed import free_port

RECIPE = Path(__file__).resolve().parents[3] / "recipes" / "tiny_cpu_mhpo.yaml"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.skipif(shutil.which("accelerate", path=str(BIN)) is None,
                                reason="accelerate CLI not installed next to this python")


@pytest.fixture(scope="module")
def easy_vqa(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("easy_vqa")
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--n", "16",
                    "--output", str(data)], check=True, capture_output=True)
    return data


def launch_two(command: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    """`accelerate launch` 2 CPU ranks of `python -m mhpo_vl COMMAND RECIPE ARGS...`; asserts a clean end
    (``ok=False``: a failed one)."""
    cmd = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           "-m", "mhpo_vl", command, str(RECIPE), *args]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert (proc.returncode == 0) == ok, proc.stderr[-3000:]
    assert "terminate called" not in proc.stderr, proc.stderr[-3000:]
    return proc


def test_two_process_cpu_launch(tiny_model_dir, easy_vqa, tmp_path):
    run = tmp_path / "run"
    launch_two("train", f"model.name_or_path={tiny_model_dir('qwen2_5_vl')}", f"data.train_dir={easy_vqa}",
               "data.eval_dir=", f"trainer.output_dir={run}", "trainer.max_steps=2", "trainer.save_every=0",
               "rollout.prompts_per_step=4", "rollout.group_size=2", "rollout.max_new_tokens=3",
               "algo.mini_batch_size=2", "logging.progress_bar=false", "logging.plots=false",
               "logging.rollouts_every=1", "logging.rollouts_per_step=8")
    lines = read_metrics(run / "metrics.jsonl")
    assert [m["step"] for m in lines] == [1, 2], "only rank 0 writes metrics"
    # a global mini-batch of a quarter of the 8 rows: 4 optimizer steps, each rank taking 1 of its 4 rows
    assert [m["optimizer_steps"] for m in lines] == [4, 4]
    assert (run / "checkpoints" / "step_2").is_dir()
    assert json.loads((run / "summary.json").read_text())["steps"] == 2
    # rollouts: rank 0 logs its own share (2 of the 4 prompts, G=2 each), nobody else writes
    for step in (1, 2):
        lines = (run / "rollouts" / f"step_{step}.jsonl").read_text().splitlines()
        assert len(lines) == 2 and all(len(json.loads(x)["responses"]) == 2 for x in lines)


def test_two_process_sft(tiny_model_dir, easy_vqa, tmp_path):
    out = tmp_path / "sft"
    proc = launch_two("sft", f"model.name_or_path={tiny_model_dir('qwen2_5_vl')}", f"data.train_dir={easy_vqa}",
                      f"sft.output_dir={out}", "sft.max_steps=2", "sft.batch_size=4", "sft.lr=1e-3",
                      "logging.progress_bar=false")
    lines = read_metrics(out / "metrics.jsonl")
    assert [m["step"] for m in lines] == [1, 2], "only rank 0 writes metrics"
    # cosine over 2 steps, stepped once per step whatever the number of processes: 1e-3 * (1 + cos(pi/2)) / 2
    assert math.isclose(lines[0]["lr"], 5e-4, rel_tol=1e-6) and lines[1]["lr"] == 0.0
    assert json.loads((out / "summary.json").read_text())["final_loss"] == lines[1]["loss"]
    assert proc.stdout.count("sft: 2 steps") == 1


def test_two_process_sft_rejects_a_batch_that_does_not_split(tiny_model_dir, easy_vqa, tmp_path):
    """3 examples over 2 ranks would give the ranks different (or, for 1, empty) batches: a clear error."""
    proc = launch_two("sft", f"model.name_or_path={tiny_model_dir('qwen2_5_vl')}", f"data.train_dir={easy_vqa}",
                      f"sft.output_dir={tmp_path / 'sft'}", "sft.max_steps=1", "sft.batch_size=3", ok=False)
    assert "sft.batch_size (3) must be a multiple of the number of processes (2)" in proc.stderr
    assert not (tmp_path / "sft" / "metrics.jsonl").exists()


def test_two_process_train_rejects_a_mini_batch_that_does_not_split(tiny_model_dir, easy_vqa, tmp_path):
    """algo.mini_batch_size counts rows over all processes: 1 row cannot be shared by 2 ranks."""
    proc = launch_two("train", f"model.name_or_path={tiny_model_dir('qwen2_5_vl')}", f"data.train_dir={easy_vqa}",
                      "data.eval_dir=", f"trainer.output_dir={tmp_path / 'run'}", "trainer.max_steps=1",
                      "rollout.prompts_per_step=2", "rollout.group_size=2", "algo.mini_batch_size=1", ok=False)
    assert "algo.mini_batch_size (1) must be a multiple of the number of processes (2)" in proc.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
