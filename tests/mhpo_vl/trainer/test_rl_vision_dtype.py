"""The frozen vision tower, run once per prompt for the update (reuse_vision), runs in the training dtype.

Outside autocast, fp32 weights gave fp32 vision features, which flash attention refuses, and which differ
from what the update's own forward would compute from the pixels under autocast (issue 27, item 11).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import mhpo_vl.trainer.rl as rl
from mhpo_vl.config import config_from_dict
from mhpo_vl.rollout.vision import encode_images, image_order
from mhpo_vl.trainer.rl import RLTrainer


@pytest.fixture(scope="module")
def easy_vqa_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("easy_vqa")
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--n", "8",
                    "--split", "train", "--output", str(out)], check=True, capture_output=True)
    return out


@pytest.fixture()
def fresh_accelerator_state():
    """accelerate keeps one mixed-precision setting per process: start and leave this test with none."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.usefixtures("fresh_accelerator_state")
@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("no", torch.float32)])
def test_reused_vision_features_are_computed_in_the_training_dtype(precision, dtype, tiny_model_dir, easy_vqa_dir,
                                                                   tmp_path, monkeypatch):
    cfg = config_from_dict({
        "model": {"name_or_path": str(tiny_model_dir("qwen2_5_vl")), "min_pixels": 3136, "max_pixels": 3136},
        "data": {"train_dir": str(easy_vqa_dir), "prompt_template": "plain", "max_prompt_tokens": 64},
        "rollout": {"prompts_per_step": 2, "group_size": 2, "max_new_tokens": 2, "mixed_precision": False},
        "trainer": {"output_dir": str(tmp_path / "run"), "max_steps": 1, "mixed_precision": precision,
                    "save_every": 0},
        "logging": {"progress_bar": False, "plots": False},
    })
    seen: list[tuple[Any, Any]] = []
    real = rl.build_update_inputs

    def observe(rollout, model, *args, **kwargs):  # the real function; keep what it returned
        inputs, prompts = real(rollout, model, *args, **kwargs)
        seen.append((rollout, inputs))
        return inputs, prompts

    monkeypatch.setattr(rl, "build_update_inputs", observe)
    trainer = RLTrainer(cfg)
    assert trainer.reuse_vision
    assert next(trainer.unwrapped.parameters()).dtype == torch.float32  # fp32 weights, as loaded
    trainer.train_step()
    (rollout, inputs), = seen
    features = inputs["mm_encoder_outputs"]["image"].pooler_output
    assert {f.dtype for f in features} == {dtype}
    # the same numbers as the tower run by itself in that regime (bf16 autocast, or plain fp32: unchanged)
    regime = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    prompts = {k: v.to(trainer.accelerator.device) for k, v in rollout.prompt_inputs.items()}
    with torch.no_grad(), regime:
        direct = encode_images(trainer.unwrapped, prompts).pooler_output
    counts = (rollout.prompt_inputs["input_ids"] == trainer.vision_start_id).sum(1).tolist()
    expected = [direct[i] for i in image_order(counts, list(range(len(counts))), rollout.group_size)]
    assert len(features) == len(expected)
    assert all(torch.equal(f, e) for f, e in zip(features, expected))
