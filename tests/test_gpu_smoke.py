"""`make gpu-smoke` (scripts/gpu_smoke.py): the skip without CUDA, and the same code end to end on the CPU at
tiny size (FSDP2 on a 1-rank group, bf16, checkpoint reload, resume, plan), so only the CUDA specifics are left
to a GPU machine."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_smoke.py"
# The keys the closing note quotes; CUDA-only numbers are null on the CPU.
KEYS = {"ok", "steps", "s_per_step", "tokens_per_s", "peak_gib", "plan_gib", "ratio", "checkpoint_reload_ok",
        "resume_ok", "sharded", "failures"}


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_without_cuda_it_skips_and_says_so():
    proc = _run()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == "no CUDA device: skipped\n"


def test_tiny_run_on_cpu_passes_every_check(tmp_path):
    """The whole script on the CPU: one JSON line on stdout, exit 0, FSDP2 really sharded, 3 finite steps, the
    checkpoint equal to the trained weights, one resumed step."""
    proc = _run("--allow-cpu", "--tiny", "--work", str(tmp_path))
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"stdout must be one JSON line, got {proc.stdout[-2000:]!r}"
    record = json.loads(lines[0])
    assert proc.returncode == 0 and record["ok"], (record, proc.stderr[-3000:])
    assert KEYS <= set(record)
    assert record["steps"] == 3 and record["failures"] == []
    assert record["sharded"] and record["checkpoint_reload_ok"] and record["resume_ok"]
    assert record["s_per_step"] > 0 and record["tokens_per_s"] > 0 and record["plan_gib"] > 0
    assert record["peak_gib"] is None and record["ratio"] is None  # CUDA-only
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert all(math.isfinite(m["grad_norm"]) and m["grad_norm"] > 0 for m in metrics)  # real gradients flowed


def test_a_failure_is_a_json_line_and_exit_1(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = _run("--allow-cpu", "--tiny", "--work", str(blocker / "work"))
    assert proc.returncode == 1
    record = json.loads(proc.stdout)
    assert record["ok"] is False and record["error"]


def test_checkpoint_comparison_sees_a_changed_tensor(tiny_model_dir):
    """weights_equal is what checkpoint_reload_ok reports: equal for the saved weights, not for changed ones."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from gpu_smoke import weights_equal
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    from mhpo_vl.config import ModelConfig
    from mhpo_vl.models import load_policy

    cfg = ModelConfig(name_or_path=str(tiny_model_dir("qwen2_5_vl")))
    state = {k: v.clone() for k, v in load_policy(cfg).state_dict().items()}
    assert weights_equal(state, Path(cfg.name_or_path), cfg)[0]
    name = next(k for k in state if k.endswith("mlp.down_proj.weight"))
    state[name][0, 0] += 1e-3
    ok, detail = weights_equal(state, Path(cfg.name_or_path), cfg)
    assert not ok and name in detail


def test_carried_wheels_become_importable_here_and_in_workers(tmp_path, monkeypatch):
    """--wheels DIR: pure-Python wheels (zips of installed files) are unpacked onto sys.path and PYTHONPATH,
    so the reward worker subprocesses import them too (no pip, no network on the GPU machine)."""
    import zipfile

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from gpu_smoke import install_wheels
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    folder = tmp_path / "wheels"
    folder.mkdir()
    with zipfile.ZipFile(folder / "smoke_probe-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("smoke_probe/__init__.py", "VALUE = 42\n")
        wheel.writestr("smoke_probe-1.0.dist-info/METADATA", "Name: smoke-probe\nVersion: 1.0\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    install_wheels(folder)
    child = subprocess.run([sys.executable, "-c", "import smoke_probe; print(smoke_probe.VALUE)"],
                           capture_output=True, text=True, timeout=60)
    assert child.stdout.strip() == "42", child.stderr
    import importlib

    assert importlib.import_module("smoke_probe").VALUE == 42
    sys.modules.pop("smoke_probe", None)


def test_fsdp2_shards_on_a_one_rank_group():
    """trainer.strategy=fsdp2 in one process applies fully_shard when a process group exists (what the smoke
    check runs on one GPU, and what fsdp_cpu_offload on one GPU needs), and stays plain without one."""
    import torch.distributed as dist

    from mhpo_vl.trainer.parallel import Parallel, is_fsdp

    # what Parallel reads of the run's accelerate Accelerator, for one process on the CPU (no global state)
    accelerator = SimpleNamespace(num_processes=1, process_index=0, is_main_process=True, device=torch.device("cpu"))
    assert not Parallel("fsdp2", accelerator).sharded
    assert not dist.is_initialized()
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    try:
        parallel = Parallel("fsdp2", accelerator)
        assert parallel.sharded and not Parallel("ddp", accelerator).sharded
        model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
        wrapped = parallel.wrap(model)
        assert is_fsdp(wrapped)
        loss = wrapped(torch.randn(3, 4)).square().sum()
        loss.backward()
        assert parallel.clip_grad_norm(list(wrapped.parameters()), 1.0) > 0
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make gpu-smoke)")
def test_gpu_smoke_on_this_gpu():
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    proc = subprocess.run([sys.executable, str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    record = json.loads(proc.stdout.splitlines()[-1])
    assert proc.returncode == 0 and record["ok"], (record, proc.stderr[-3000:])
