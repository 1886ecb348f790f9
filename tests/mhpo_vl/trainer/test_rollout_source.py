"""RolloutSource on a tiny Qwen2.5-VL: prompt order, group rows, resume position, weight sync wiring."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from mhpo_vl.config import config_from_dict
from mhpo_vl.models import is_vision_param, load_policy, load_processor
from mhpo_vl.trainer.batching import PromptSampler
from mhpo_vl.trainer.checkpoint import load_training_state, save_checkpoint
from mhpo_vl.trainer.parallel import Parallel
from mhpo_vl.trainer.rollout_source import RolloutSource
from mhpo_vl.trainer.setup import load_train_data, make_accelerator

GROUP = 2


@pytest.fixture(scope="module")
def parts(tiny_model_dir, tmp_path_factory) -> SimpleNamespace:
    data = tmp_path_factory.mktemp("easy_vqa")
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--n", "12",
                    "--split", "train", "--output", str(data)], check=True, capture_output=True)
    cfg = config_from_dict({
        "model": {"name_or_path": str(tiny_model_dir("qwen2_5_vl")), "min_pixels": 3136, "max_pixels": 3136},
        "data": {"train_dir": str(data), "prompt_template": "plain", "max_prompt_tokens": 64},
        "rollout": {"prompts_per_step": 2, "group_size": GROUP, "max_new_tokens": 3},
        "trainer": {"output_dir": str(data / "run"), "mixed_precision": "no", "seed": 7},
    })
    accelerator = make_accelerator("no")
    return SimpleNamespace(cfg=cfg, accelerator=accelerator, parallel=Parallel.from_config(cfg.trainer, accelerator),
                           processor=load_processor(cfg.model), dataset=load_train_data(cfg),
                           model=load_policy(cfg.model))


def _source(p: SimpleNamespace) -> RolloutSource:
    return RolloutSource(p.cfg, p.processor, p.dataset, p.accelerator, p.parallel)


def _ids(rollout) -> list[str]:
    return [r["id"] for r in rollout.records]


def test_generate_gives_group_size_rows_for_the_next_prompts_of_the_seeded_order(parts):
    source = _source(parts)
    first, second = source.generate(3, parts.model), source.generate(2, parts.model)
    order = PromptSampler(len(parts.dataset), seed=7).take(5)
    assert _ids(first) + _ids(second) == [parts.dataset[i]["id"] for i in order]
    assert source.sampler.position == 5
    assert len(first) == 3 * GROUP and first.group_size == GROUP and len(first.texts) == 3 * GROUP
    assert first.prompt_inputs["input_ids"].shape[0] == 3 and "pixel_values" in first.prompt_inputs
    assert first.logprobs is not None and first.logprobs.shape == first.response_ids.shape
    assert first.response_ids.shape[1] <= parts.cfg.rollout.max_new_tokens


def test_data_position_round_trips_through_a_checkpoint(parts, tmp_path):
    before = _source(parts)
    before.generate(3, parts.model)
    path = save_checkpoint(tmp_path, 1, model=parts.model, optimizer=None, scheduler=None, state=before.state(),
                           keep_last=1)
    after = _source(parts)
    assert after.sampler.position == 0
    after.load_state(load_training_state(path, model=parts.model, optimizer=None, scheduler=None, restore_rng=False))
    assert after.sampler.position == 3
    assert _ids(after.generate(4, parts.model)) == _ids(before.generate(4, parts.model))


class _Engine:
    """An engine holding its own weights: records what a sync pushes."""

    needs_weight_sync = True

    def __init__(self) -> None:
        self.pushed: dict[str, torch.Tensor] | None = None

    def sync_weights(self, weights) -> None:
        self.pushed = {name: t.clone() for name, t in weights}


def test_sync_weights_pushes_the_trainable_weights_only_to_an_engine_with_its_own_copy(parts):
    source = _source(parts)
    assert not source.needs_weight_sync  # HF samples from the training model: nothing to push
    source.sync_weights(parts.model)
    engine = _Engine()
    source.backend = engine
    assert source.needs_weight_sync
    source.sync_weights(parts.model)
    trainable = {n: p for n, p in parts.model.named_parameters() if p.requires_grad}
    assert engine.pushed is not None and set(engine.pushed) == set(trainable)
    assert not any(is_vision_param(n) for n in engine.pushed)  # the frozen tower stays as the engine loaded it
    assert all(torch.equal(engine.pushed[n], p.detach()) for n, p in trainable.items())



class _Bf16Accelerator:
    """The run's accelerator with trainer.mixed_precision=bf16's autocast (accelerate keeps one state per
    process, so the fixture's cannot be rebuilt with another precision)."""

    def __init__(self, accelerator) -> None:
        self._accelerator = accelerator

    def __getattr__(self, name: str):
        return getattr(self._accelerator, name)

    def autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16)


class _AutocastProbe:
    """A backend that records whether torch autocast was on when it was asked to generate."""

    def __init__(self, needs_weight_sync: bool) -> None:
        self.needs_weight_sync = needs_weight_sync
        self.autocast: bool | None = None

    def generate(self, model, batch, params):
        self.autocast = torch.is_autocast_enabled("cpu")


def test_hf_generate_runs_under_mixed_precision_and_a_vllm_engine_never_does(parts):
    """rollout.mixed_precision puts HF generate under the trainer's autocast; a vLLM engine has its own dtype
    (rollout.vllm.dtype) and must not run inside the trainer's autocast."""
    source = _source(parts)
    source.accelerator = _Bf16Accelerator(parts.accelerator)
    hf, engine = _AutocastProbe(needs_weight_sync=False), _AutocastProbe(needs_weight_sync=True)
    for backend in (hf, engine):
        source.backend = backend
        source.generate(2, parts.model)
    assert hf.autocast is True
    assert engine.autocast is False
