"""End to end with the vLLM engine: train the tiny VL recipe, resume, evaluate with both backends.

The commands run as users run them (``python -m mhpo_vl train``, ``python -m eval run``), each in its own
process, with the venv's python (``make test`` runs this file with .venv-vllm).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mhpo_vl.config import ModelConfig
from mhpo_vl.data import PromptCollator
from mhpo_vl.models import load_policy, load_processor
from mhpo_vl.rollout import HFRolloutBackend, SamplingParams, build_sequence_inputs, token_logprobs
from tests.mhpo_vl.rollout.vllm_helpers import needs_vllm

pytestmark = [pytest.mark.vllm, needs_vllm]

ROOT = Path(__file__).resolve().parents[3]
MISMATCH_KEYS = ("rollout/logprob_abs_diff_mean", "rollout/logprob_abs_diff_max", "rollout/is_weight_mean",
                 "rollout/is_weight_max", "rollout/masked_frac")
# A reward with variance across samples of an untrained model, so every step really changes the weights.
REWARD = "def vowel_share(completion, reference, **_):\n    return sum(c in 'aeiou' for c in completion) / max(len(completion), 1)\n"


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def assets(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm_e2e")
    data = root / "data" / "easy_vqa"
    for split, n in (("train", 48), ("test", 12)):
        _run("-m", "data_prep", "synthetic", "--task", "easy_vqa", "--image-size", "56", "--n", str(n),
             "--split", split, "--output", str(data))
    reward = root / "reward.py"
    reward.write_text(REWARD)
    return tiny_model_dir("qwen2_5_vl"), data, reward


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _train(model: Path, data: Path, reward: Path, out: Path, *extra: str) -> None:
    proc = _run("-m", "mhpo_vl", "train", "recipes/tiny_cpu_mhpo.yaml", "rollout.backend=vllm",
         f"model.name_or_path={model}", "model.min_pixels=3136", "model.max_pixels=3136",
         f"data.train_dir={data}", f"data.eval_dir={data}", f"trainer.output_dir={out}",
         "rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=6",
         f"reward.components={{{reward}:vowel_share: 1.0}}", "trainer.lr=5e-3", "trainer.save_every=2",
         "trainer.eval_every=3", "trainer.eval_limit=6", "trainer.keep_last=2", "logging.progress_bar=false",
         "logging.plots=false",
         *extra)
    # The engine is shut down before the process group ends: vLLM's exit-time finalizer used to print
    # "ValueError: Invalid process group specified" after every successful run.
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def test_train_resume_and_engine_holds_resumed_weights(assets, tmp_path):
    model, data, reward = assets
    out = tmp_path / "run"
    _train(model, data, reward, out, "trainer.max_steps=2")
    assert [m["step"] for m in _metrics(out)] == [1, 2]
    _train(model, data, reward, out, "trainer.max_steps=3", "trainer.resume=auto")
    rows = _metrics(out)
    assert [m["step"] for m in rows] == [1, 2, 3]
    for row in rows:
        assert all(key in row for key in MISMATCH_KEYS), sorted(row)
        # Step 3 is the first of the resumed process: its engine started from the base files, so a
        # missing sync after the resume would show here (the weights moved far, checked below).
        assert row["rollout/logprob_abs_diff_mean"] < 1e-3, (row["step"], row["rollout/logprob_abs_diff_mean"])
        assert row["rollout/logprob_abs_diff_max"] < 1e-2
        assert 0.9 < row["rollout/is_weight_mean"] < 1.1 and row["rollout/masked_frac"] == 0.0
    assert any(row["grad_norm"] > 0 for row in rows)
    assert "eval/accuracy" in rows[-1]
    assert _moved(model, out / "checkpoints" / "step_2") > 0.1


def _moved(base: Path, checkpoint: Path) -> float:
    """Largest change of a greedy response's token log-prob between the base model and the checkpoint."""
    cfg = ModelConfig(name_or_path=str(base), min_pixels=3136, max_pixels=3136)
    processor = load_processor(cfg)
    records = [{"id": "x", "prompt": "What shape is this?", "answer": "circle", "images": [],
                "image_root": None}]
    batch = PromptCollator(processor, template="plain")(records)
    old = load_policy(cfg).eval()
    new = load_policy(ModelConfig(name_or_path=str(checkpoint))).eval()
    rollout = HFRolloutBackend(processor).generate(old, batch, SamplingParams(temperature=0.0, max_new_tokens=6))
    vs = processor.tokenizer.convert_tokens_to_ids("<|vision_start|>")
    with torch.no_grad():
        lp = [token_logprobs(m, build_sequence_inputs(rollout, m, vs), rollout.response_ids)[0] for m in (old, new)]
    mask = rollout.response_mask.bool()
    return float((lp[0][mask] - lp[1][mask]).abs().max())


def test_eval_cli_vllm_matches_hf_greedy(assets, tmp_path):
    model, data, _ = assets
    results = {}
    for backend in ("hf", "vllm"):
        out = tmp_path / backend
        _run("-m", "eval", "run", "--model", str(model), "--benchmarks", "easy_vqa", "--data-dir",
             str(data.parent), "--output", str(out), "--max-new-tokens", "6", "--template", "plain",
             "--min-pixels", "3136", "--max-pixels", "3136", "--no-progress", "--backend", backend)
        results[backend] = (json.loads((out / "results.json").read_text())["benchmarks"]["easy_vqa"],
                            [json.loads(line)["response"] for line in (out / "samples.jsonl").read_text().splitlines()])
    assert results["vllm"][0]["n"] == 12
    assert results["vllm"][1] == results["hf"][1], "greedy responses must be identical"
    assert results["vllm"][0]["accuracy"] == results["hf"][0]["accuracy"]


def test_fsdp2_two_processes_each_engine_gets_full_weights(assets, tmp_path):
    """trainer.strategy=fsdp2 on 2 CPU ranks: each rank's engine is loaded with the gathered full tensors
    (a shard would not even load), so both ranks' sampling log-probs match their trainer's."""
    model, data, reward = assets
    out = tmp_path / "fsdp2"
    env = {**__import__("os").environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mhpo_vl",
           "train", "recipes/tiny_cpu_mhpo.yaml", "rollout.backend=vllm", "trainer.strategy=fsdp2",
           f"model.name_or_path={model}", "model.min_pixels=3136", "model.max_pixels=3136", f"data.train_dir={data}",
           "data.eval_dir=", f"trainer.output_dir={out}", "rollout.prompts_per_step=4", "rollout.group_size=4",
           "rollout.max_new_tokens=6", f"reward.components={{{reward}:vowel_share: 1.0}}", "trainer.lr=5e-3",
           "trainer.max_steps=2", "logging.progress_bar=false", "logging.plots=false"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)  # hang guard
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    rows = _metrics(out)
    assert [m["step"] for m in rows] == [1, 2]
    assert any(row["grad_norm"] > 0 for row in rows)
    for row in rows:  # means over ranks, maxima over ranks
        assert row["rollout/logprob_abs_diff_mean"] < 1e-3 and row["rollout/logprob_abs_diff_max"] < 1e-2, row
