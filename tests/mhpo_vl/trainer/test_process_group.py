"""The training entry points end the process group accelerate starts for them, on success and on error.

One process is enough to see it: with ``LOCAL_RANK`` set, accelerate starts a (1-rank, gloo) group on
CPU just as under `accelerate launch`. The 2-process launches are in test_multiprocess.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from mhpo_vl.config import config_from_dict
from mhpo_vl.errors import UserError
from mhpo_vl.trainer import run_sft, run_training
from mhpo_vl.trainer.setup import owned_process_group
from tests.mhpo_vl.trainer.distributed import free_port


@pytest.fixture
def launched(monkeypatch):
    """The environment `accelerate launch` gives a rank (world of 1); state and group cleaned up after."""
    env = {"LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()
    AcceleratorState._reset_state(reset_partial_state=True)


def _cfg(model: Path | str, data: Path | str, out: Path):
    return config_from_dict({
        "model": {"name_or_path": str(model), "min_pixels": 3136, "max_pixels": 3136},
        "data": {"train_dir": str(data), "prompt_template": "plain", "max_prompt_tokens": 64},
        "rollout": {"prompts_per_step": 2, "group_size": 2, "max_new_tokens": 3},
        "trainer": {"output_dir": str(out / "rl"), "max_steps": 1, "mixed_precision": "no"},
        "sft": {"output_dir": str(out / "sft"), "max_steps": 1, "batch_size": 2},
        "logging": {"progress_bar": False, "plots": False},
    })


def test_the_fixture_makes_accelerate_start_a_group(launched):
    with owned_process_group():
        Accelerator(cpu=True)
        assert dist.is_initialized() and dist.get_backend() == "gloo"
    assert not dist.is_initialized()
    Accelerator(cpu=True)  # accelerate's state was reset with the group: a new run starts a new one
    assert dist.is_initialized()


def test_a_group_that_existed_before_is_left_to_its_creator(launched):
    dist.init_process_group("gloo", rank=0, world_size=1)
    with owned_process_group():
        Accelerator(cpu=True)
    assert dist.is_initialized()


def test_the_group_ends_when_the_block_raises(launched):
    with pytest.raises(RuntimeError, match="boom"), owned_process_group():
        Accelerator(cpu=True)
        raise RuntimeError("boom")
    assert not dist.is_initialized()


def test_run_training_ends_its_group(launched, tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--n", "4",
                    "--output", str(data)], check=True, capture_output=True)
    summary = run_training(_cfg(tiny_model_dir("qwen2_5_vl"), data, tmp_path))
    assert summary["steps"] == 1
    assert not dist.is_initialized()


@pytest.mark.parametrize("entry", [run_training, run_sft], ids=["train", "sft"])
def test_entry_points_end_their_group_on_an_error(entry, launched, tmp_path):
    cfg = _cfg("unused", "", tmp_path)  # no training data: a UserError after the accelerator is made
    with pytest.raises(UserError, match="data.train_dir is empty"):
        entry(cfg)
    assert not dist.is_initialized()
