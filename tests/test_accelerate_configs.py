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


def _slurm_bins(tmp_path: Path) -> Path:
    """Stand-ins for the cluster commands: scontrol lists 3 hosts; srun prints its own options (up to the
    command it runs) and runs that command as node 1; accelerate prints its arguments and OMP_NUM_THREADS."""
    bins = tmp_path / "bin"
    bins.mkdir()
    _fake(bins, "scontrol", 'printf "gpu-node-a\\ngpu-node-b\\ngpu-node-c\\n"')
    _fake(bins, "srun", 'opts=(); while [ "$1" != bash ]; do opts+=("$1"); shift; done\n'
                        'echo "srun ${opts[*]}"; SLURM_NODEID=1 "$@"')
    _fake(bins, "accelerate", 'echo "OMP:$OMP_NUM_THREADS"; for a in "$@"; do echo "ARG:$a"; done')
    return bins


def _run_slurm(tmp_path: Path, **extra_env: str) -> subprocess.CompletedProcess:
    env = {"PATH": f"{_slurm_bins(tmp_path)}:{os.environ['PATH']}", "SLURM_NNODES": "3",
           "SLURM_JOB_NODELIST": "gpu-node-[a-c]", "GPUS_PER_NODE": "4",
           "MHPO_PYTHON_ENV": str(tmp_path / "no-venv"), **extra_env}
    return subprocess.run(["bash", str(CONFIG_DIR / "slurm.sbatch"), "recipes/my recipe.yaml",
                           "trainer.strategy=fsdp2", "trainer.output_dir=runs/x y"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_slurm_script_is_valid_bash():
    proc = subprocess.run(["bash", "-n", str(CONFIG_DIR / "slurm.sbatch")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_slurm_script_builds_the_launch_from_job_variables(tmp_path):
    """The script's own logic runs; only the cluster commands (scontrol, srun, accelerate) are stand-ins
    that print what they were asked to do, as on node 1 of a 3-node job."""
    proc = _run_slurm(tmp_path, SLURM_CPUS_PER_TASK="32")
    assert proc.returncode == 0, proc.stderr
    args = [line[4:] for line in proc.stdout.splitlines() if line.startswith("ARG:")]
    joined = " ".join(args)
    assert "--config_file recipes/accelerate/multinode.yaml" in joined
    assert "--num_machines 3 --num_processes 12 --machine_rank 1" in joined
    assert "--main_process_ip gpu-node-a --main_process_port 29500" in joined
    assert args[-6:] == ["-m", "mhpo_vl", "train", "recipes/my recipe.yaml", "trainer.strategy=fsdp2",
                         "trainer.output_dir=runs/x y"]
    # srun does not inherit sbatch's --cpus-per-task since SLURM 22.05: the script passes it on
    assert "srun --kill-on-bad-exit=1 --cpus-per-task=32" in proc.stdout
    assert "OMP:8" in proc.stdout  # 32 CPUs over 4 GPUs


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_slurm_script_without_cpus_per_task_warns(tmp_path):
    proc = _run_slurm(tmp_path, SLURM_CPUS_PER_TASK="")
    assert proc.returncode == 0, proc.stderr
    assert "--cpus-per-task" not in proc.stdout and "SLURM_CPUS_PER_TASK is unset" in proc.stderr


def test_slurm_script_asks_for_cpus_per_task():
    """The #SBATCH header asks for CPUs per task; the srun line passes them on (not inherited)."""
    text = (CONFIG_DIR / "slurm.sbatch").read_text()
    assert re.search(r"^#SBATCH --cpus-per-task=\d+", text, re.M)
    (srun,) = [line for line in text.splitlines() if line.startswith("srun ")]
    assert "$SRUN_CPUS" in srun and 'SRUN_CPUS="--cpus-per-task=$CPUS_PER_TASK"' in text


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
