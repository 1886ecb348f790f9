"""Two CPU processes through `accelerate launch` (gloo): the documented multi-process path works.

Each launch must end cleanly: exit code 0 and no rank aborted at exit ("terminate called ..." is what
a gloo process group left to interpreter exit prints before the SIGABRT).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mhpo_vl.trainer.metrics import read_metrics
from tests.mhpo_vl.trainer.distributed import free_port


@pytest.mark.skipif(shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None,
                    reason="accelerate CLI not installed next to this python")
def test_two_process_cpu_launch(tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--n", "16",
                    "--output", str(data)], check=True, capture_output=True)
    recipe = Path(__file__).resolve().parents[3] / "recipes" / "tiny_cpu_mhpo.yaml"
    run = tmp_path / "run"
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), "-m", "mhpo_vl", "train",
           str(recipe), f"model.name_or_path={tiny_model_dir('qwen2_5_vl')}", f"data.train_dir={data}",
           "data.eval_dir=", f"trainer.output_dir={run}", "trainer.max_steps=2", "trainer.save_every=0",
           "rollout.prompts_per_step=4", "rollout.group_size=2", "rollout.max_new_tokens=3",
           "logging.progress_bar=false", "logging.plots=false", "logging.rollouts_every=1",
           "logging.rollouts_per_step=8"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "terminate called" not in proc.stderr, proc.stderr[-3000:]
    assert [m["step"] for m in read_metrics(run / "metrics.jsonl")] == [1, 2], "only rank 0 writes metrics"
    assert (run / "checkpoints" / "step_2").is_dir()
    # rollouts: rank 0 logs its own share (2 of the 4 prompts, G=2 each), nobody else writes
    for step in (1, 2):
        lines = (run / "rollouts" / f"step_{step}.jsonl").read_text().splitlines()
        assert len(lines) == 2 and all(len(json.loads(x)["responses"]) == 2 for x in lines)
