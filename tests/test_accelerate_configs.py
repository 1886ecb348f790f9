"""Launch configs in recipes/accelerate/: accelerate's own loader reads them, the SLURM script composes the
launch from the job's variables, and the multi-GPU recipes name a config and the strategy they need."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file

from mhpo_vl.trainer.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "recipes" / "accelerate"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
# Full-parameter recipes that need sharding (mhpo-vl plan: they do not fit 80 GB GPUs under DDP).
SHARDED = ["qwen2_5_vl_7b_geo3k_mhpo.yaml", "qwen2_5_vl_7b_geo3k_grpo.yaml", "qwen2_5_vl_7b_geo3k_dapo.yaml",
           "qwen2_5_7b_instruct_math_mhpo.yaml", "qwen3_vl_4b_mhpo.yaml"]
_CONFIG_REF = re.compile(r"recipes/accelerate/([\w.-]+\.yaml)")


def test_expected_configs_exist():
    assert {p.name for p in CONFIGS} == {"1node_ddp.yaml", "1node_fsdp2.yaml", "multinode.yaml"}
    assert (CONFIG_DIR / "slurm.sbatch").is_file()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses_with_accelerates_loader(path):
    config = load_config_from_file(str(path))  # unknown keys or bad values raise
    assert str(config.distributed_type) in ("MULTI_GPU", "DistributedType.MULTI_GPU")
    assert config.num_processes % config.num_machines == 0 and config.num_processes >= 2
    assert not config.use_cpu and config.fsdp_config == {} and config.deepspeed_config == {}
    if config.num_machines > 1:
        assert config.main_process_ip and config.main_process_port


def test_fsdp2_config_says_the_trainer_shards():
    text = (CONFIG_DIR / "1node_fsdp2.yaml").read_text()
    assert "trainer.strategy=fsdp2" in text and "distributed_type: FSDP" in text  # the warning against it


def _header(recipe: Path) -> str:
    return "".join(line for line in recipe.read_text().splitlines(keepends=True) if line.startswith("#"))


@pytest.mark.parametrize("name", SHARDED)
def test_sharded_recipes_name_a_config_and_the_strategy(name):
    header = _header(ROOT / "recipes" / name)
    refs = _CONFIG_REF.findall(header)
    assert "1node_fsdp2.yaml" in refs, f"{name}: header names no FSDP2 launch config"
    assert "trainer.strategy=fsdp2" in header and "mhpo-vl plan" in header


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_named_config_exists(recipe):
    for ref in _CONFIG_REF.findall(_header(recipe)):
        assert (CONFIG_DIR / ref).is_file(), f"{recipe.name} names missing recipes/accelerate/{ref}"


def _fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_slurm_script_builds_the_launch_from_job_variables(tmp_path):
    """The script's own logic runs; only the cluster commands (scontrol, srun, accelerate) are stand-ins
    that print what they were asked to do, as on node 1 of a 3-node job."""
    bins = tmp_path / "bin"
    bins.mkdir()
    _fake(bins, "scontrol", 'printf "gpu-node-a\\ngpu-node-b\\ngpu-node-c\\n"')
    _fake(bins, "srun", 'echo "srun $1"; shift; SLURM_NODEID=1 "$@"')
    _fake(bins, "accelerate", 'for a in "$@"; do echo "ARG:$a"; done')
    env = {"PATH": f"{bins}:{os.environ['PATH']}", "SLURM_NNODES": "3", "SLURM_JOB_NODELIST": "gpu-node-[a-c]",
           "GPUS_PER_NODE": "4", "MHPO_PYTHON_ENV": str(tmp_path / "no-venv")}
    proc = subprocess.run(["bash", str(CONFIG_DIR / "slurm.sbatch"), "recipes/my recipe.yaml",
                           "trainer.strategy=fsdp2", "trainer.output_dir=runs/x y"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    args = [line[4:] for line in proc.stdout.splitlines() if line.startswith("ARG:")]
    joined = " ".join(args)
    assert "--config_file recipes/accelerate/multinode.yaml" in joined
    assert "--num_machines 3 --num_processes 12 --machine_rank 1" in joined
    assert "--main_process_ip gpu-node-a --main_process_port 29500" in joined
    assert args[-6:] == ["-m", "mhpo_vl", "train", "recipes/my recipe.yaml", "trainer.strategy=fsdp2",
                         "trainer.output_dir=runs/x y"]
    assert "srun --kill-on-bad-exit=1" in proc.stdout


def test_slurm_script_without_recipe_is_a_usage_error():
    proc = subprocess.run(["bash", str(CONFIG_DIR / "slurm.sbatch")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage: sbatch" in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None,
                    reason="accelerate CLI not installed next to this python")
@pytest.mark.parametrize("config, strategy", [("1node_ddp.yaml", "ddp"), ("1node_fsdp2.yaml", "fsdp2")])
def test_config_launches_two_cpu_processes(config, strategy, tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--n", "16",
                    "--output", str(data)], check=True, capture_output=True)
    run = tmp_path / "run"
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file",
           str(CONFIG_DIR / config), "--num_processes", "2", "-m", "mhpo_vl", "train",
           str(ROOT / "recipes" / "tiny_cpu_mhpo.yaml"), f"model.name_or_path={tiny_model_dir('qwen2_5_vl')}",
           f"data.train_dir={data}", "data.eval_dir=", f"trainer.output_dir={run}", "trainer.max_steps=1",
           f"trainer.strategy={strategy}",
           "rollout.prompts_per_step=4", "rollout.group_size=2", "rollout.max_new_tokens=3",
           "logging.progress_bar=false", "logging.plots=false"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "terminate called" not in proc.stderr, proc.stderr[-3000:]  # no rank aborted at exit
    (line,) = read_metrics(run / "metrics.jsonl")
    assert line["step"] == 1 and math.isfinite(line["grad_norm"])
