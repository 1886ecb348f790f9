"""A training checkpoint is a model folder vLLM loads: ``python -m eval run --backend vllm`` scores a checkpoint
of a vLLM training run exactly like the HF backend at temperature 0.

vLLM takes every ``*.safetensors`` in a model folder as weights; the trainer's RNG tensors once sat there and
the engine refused the checkpoint ("no module or parameter named 'torch_cpu'"). The commands run as users run
them, each in its own process, with the venv's python (``make test`` runs this file with .venv-vllm).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.mhpo_vl.rollout.vllm_helpers import needs_vllm

pytestmark = [pytest.mark.vllm, needs_vllm]

ROOT = Path(__file__).resolve().parents[3]
# A reward with variance across samples of an untrained model, so both steps really change the weights.
REWARD = "def vowel_share(completion, reference, **_):\n    return sum(c in 'aeiou' for c in completion) / max(len(completion), 1)\n"
PIXELS = ("3136", "3136")  # 56x56 images -> 4 image tokens


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _eval(model: Path, data: Path, out: Path, backend: str) -> tuple[dict, list[str]]:
    _run("-m", "eval", "run", "--model", str(model), "--benchmarks", "easy_vqa", "--data-dir", str(data.parent),
         "--output", str(out), "--max-new-tokens", "6", "--template", "plain", "--min-pixels", PIXELS[0],
         "--max-pixels", PIXELS[1], "--no-progress", "--backend", backend)
    result = json.loads((out / "results.json").read_text())["benchmarks"]["easy_vqa"]
    responses = [json.loads(line)["response"] for line in (out / "samples.jsonl").read_text().splitlines()]
    return result, responses


def test_eval_vllm_scores_a_checkpoint_of_a_vllm_run_like_hf(tiny_model_dir, tmp_path):
    data = tmp_path / "data" / "easy_vqa"
    for split, n in (("train", 8), ("test", 8)):
        _run("-m", "data_prep", "synthetic", "--task", "easy_vqa", "--image-size", "56", "--n", str(n),
             "--split", split, "--output", str(data))
    reward = tmp_path / "reward.py"
    reward.write_text(REWARD)
    base, run = tiny_model_dir("qwen2_5_vl"), tmp_path / "run"
    _run("-m", "mhpo_vl", "train", "recipes/tiny_cpu_mhpo.yaml", "rollout.backend=vllm",
         f"model.name_or_path={base}", f"model.min_pixels={PIXELS[0]}", f"model.max_pixels={PIXELS[1]}",
         f"data.train_dir={data}", "data.eval_dir=", f"trainer.output_dir={run}", "rollout.prompts_per_step=2",
         "rollout.group_size=4", "rollout.max_new_tokens=6", f"reward.components={{{reward}:vowel_share: 1.0}}",
         "trainer.lr=5e-2", "trainer.max_steps=2", "trainer.save_every=2", "logging.progress_bar=false",
         "logging.plots=false")
    ckpt = run / "checkpoints" / "step_2"
    trained, original = load_file(str(ckpt / "model.safetensors")), load_file(str(base / "model.safetensors"))
    assert any(not trained[k].equal(original[k]) for k in original), "the run must have moved the weights"

    (hf, hf_texts), (vllm, vllm_texts) = (_eval(ckpt, data, tmp_path / b, b) for b in ("hf", "vllm"))
    assert vllm["n"] == hf["n"] == 8
    assert vllm_texts == hf_texts, "greedy responses of the checkpoint must be identical"
    assert vllm["accuracy"] == hf["accuracy"]
    assert (ckpt / "trainer_state" / "rng_state.safetensors").is_file(), "trainer state kept, out of vLLM's way"
