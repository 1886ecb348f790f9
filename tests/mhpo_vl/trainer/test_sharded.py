"""Two CPU processes (gloo) under trainer.strategy=fsdp2 and ddp, through torchrun and the real trainer.

Runs are shared between assertions: per strategy one 5-step run (checkpoints at 3 and 5; rank 0's loss
is NaN at step 2; a KL term, so the reference model is sharded too) and 2-step resumes from the step-3
checkpoints; one LoRA run. The launcher draws each prompt's
samples with a seed of its own, so 1 and 2 processes with the same global batch see the same samples.
A desync between ranks fails within the launcher's 30 s process-group timeout instead of hanging.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mhpo_vl.config import load_config
from mhpo_vl.trainer.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[3]
RECIPE = ROOT / "recipes" / "tiny_cpu_mhpo.yaml"
LAUNCHER = Path(__file__).with_name("sharded_launcher.py")
N_PROMPTS, PROMPTS_PER_STEP, NAN_STEP = 16, 4, 2


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("sharded")
    data = root / "data"
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--n", str(N_PROMPTS),
                    "--output", str(data)], check=True, capture_output=True)
    reward = root / "odd_length.py"  # varies across samples from the first step, so gradients are non-zero
    reward.write_text("def odd_length(completion, reference, **kw):\n    return float(len(completion) % 2)\n")
    overrides = [f"model.name_or_path={tiny_model_dir('qwen2_5_vl')}", "model.min_pixels=3136",
                 "model.max_pixels=3136", f"data.train_dir={data}", "data.eval_dir=",
                 f"rollout.prompts_per_step={PROMPTS_PER_STEP}", "rollout.group_size=4", "rollout.max_new_tokens=3",
                 f"reward.components={{'{reward}:odd_length': 1.0}}", "trainer.lr=1e-3", "trainer.max_steps=5", "algo.kl_coef=0.01",
                 "trainer.save_every=3", "trainer.keep_last=2", "logging.progress_bar=false", "logging.plots=false"]
    return {"root": root, "data": data, "overrides": overrides, "model_dir": tiny_model_dir("qwen2_5_vl")}


def _launch(setup: dict, name: str, *extra: str, nan: bool = False) -> Path:
    out = setup["root"] / name
    out.mkdir()
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "MHPO_TEST_OUT": str(out),
           "MHPO_TEST_PG_TIMEOUT": "30"}
    if nan:
        env.update({"MHPO_TEST_NAN_RANK": "0", "MHPO_TEST_NAN_STEP": str(NAN_STEP)})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(LAUNCHER),
           str(RECIPE), *setup["overrides"], f"trainer.output_dir={out / 'run'}", *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)  # outer guard only
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "terminate called" not in proc.stderr, proc.stderr[-4000:]  # no rank aborted at exit
    return out


@pytest.fixture(scope="module")
def five_steps(setup) -> dict[str, Path]:
    """Per strategy: 5 steps, checkpoints at 3 and 5, rank 0's loss NaN at step 2."""
    return {s: _launch(setup, f"{s}_5", f"trainer.strategy={s}", nan=True) for s in ("fsdp2", "ddp")}


def _weights(out: Path, rank: int = 0) -> dict[str, torch.Tensor]:
    return load_file(str(out / f"weights_rank{rank}.safetensors"))


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= atol, f"max weight difference {worst:g} > {atol:g}"


def test_fsdp2_first_step_equals_one_process(setup, five_steps, tmp_path):
    from tests.mhpo_vl.trainer.sharded_launcher import make_trainer

    cfg = load_config(RECIPE, [*setup["overrides"], "trainer.max_steps=1", f"trainer.output_dir={tmp_path / 'run'}"])
    make_trainer(cfg).train()
    one = read_metrics(tmp_path / "run" / "metrics.jsonl")[0]
    two = read_metrics(five_steps["fsdp2"] / "run" / "metrics.jsonl")[0]
    assert two["reward/mean"] == pytest.approx(one["reward/mean"], abs=1e-6), "not the same samples"
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-4, abs=1e-6)
    assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)
    assert one["grad_norm"] > 0


@pytest.mark.parametrize("strategy", ["fsdp2", "ddp"])
def test_nan_on_rank0_skips_on_both_ranks(five_steps, strategy):
    out = five_steps[strategy]
    lines = read_metrics(out / "run" / "metrics.jsonl")
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 5]
    assert [m["skipped_steps"] for m in lines] == [0, 1, 1, 1, 1], "the skip is counted once"
    assert math.isnan(lines[NAN_STEP - 1]["grad_norm"])
    for m in lines[:NAN_STEP - 1] + lines[NAN_STEP:]:
        assert math.isfinite(m["grad_norm"]) and m["grad_norm"] > 0, m["grad_norm"]
    states = [json.loads((out / f"state_rank{r}.json").read_text()) for r in (0, 1)]
    assert states[0] == states[1] == {"optimizer_steps": 4.0, "skipped_total": 1}, states
    _assert_close(_weights(out, 0), _weights(out, 1), atol=0.0)  # replicas (or gathered shards) identical


def test_fsdp2_and_ddp_give_the_same_weights(setup, five_steps):
    """Same training up to float summation order: reduce-scatter and all-reduce add gradients in different
    orders, and AdamW turns a relative wobble in a near-zero gradient (|g| ~ eps) into a visible share of
    one step (lr = 1e-3), so single elements may differ by a small fraction of lr. A sharding bug (a missed
    or double-counted gradient shard, clipping over one shard) changes the update by a whole step or more."""
    initial = load_file(str(setup["model_dir"] / "model.safetensors"))
    for step in (3, 5):
        fsdp2, ddp = (load_file(str(five_steps[s] / "run" / "checkpoints" / f"step_{step}" / "model.safetensors"))
                      for s in ("fsdp2", "ddp"))
        _assert_close(fsdp2, ddp, atol=1e-4)  # a tenth of one AdamW step at lr=1e-3
        diff = math.sqrt(sum(float((fsdp2[k] - ddp[k]).square().sum()) for k in fsdp2))
        update = math.sqrt(sum(float((ddp[k] - initial[k]).square().sum()) for k in ddp))
        assert update > 0.1, f"the weights barely moved ({update:g}), the comparison says nothing"
        assert diff <= 1e-3 * update, f"FSDP2 and DDP updates differ by {diff / update:.2e} of the update's norm"
    fsdp2 = read_metrics(five_steps["fsdp2"] / "run" / "metrics.jsonl")
    ddp = read_metrics(five_steps["ddp"] / "run" / "metrics.jsonl")
    assert [m["reward/mean"] for m in fsdp2] == pytest.approx([m["reward/mean"] for m in ddp], abs=1e-6)


def test_every_prompt_seen_once_per_epoch_across_ranks(five_steps):
    steps_per_epoch = N_PROMPTS // PROMPTS_PER_STEP
    seen: dict[int, list[int]] = {}
    for rank in (0, 1):
        for line in (five_steps["fsdp2"] / f"prompts_rank{rank}.jsonl").read_text().splitlines():
            entry = json.loads(line)
            assert len(entry["indices"]) == PROMPTS_PER_STEP // 2
            if entry["step"] <= steps_per_epoch:
                for index in entry["indices"]:
                    seen.setdefault(index, []).append(rank)
    assert sorted(seen) == list(range(N_PROMPTS)) and all(len(r) == 1 for r in seen.values()), seen


def test_final_checkpoint_loads_standalone(five_steps):
    from transformers import AutoModelForImageTextToText

    from mhpo_vl.config import ModelConfig
    from mhpo_vl.models import load_processor

    ckpt = five_steps["fsdp2"] / "run" / "checkpoints" / "step_5"
    model = AutoModelForImageTextToText.from_pretrained(str(ckpt), dtype=torch.float32)
    _assert_close({k: v for k, v in model.state_dict().items()}, _weights(five_steps["fsdp2"]), atol=0.0)
    assert load_processor(ModelConfig(name_or_path=str(ckpt))) is not None


@pytest.mark.parametrize(("strategy", "source"), [("fsdp2", "fsdp2"), ("ddp", "ddp"), ("fsdp2", "ddp")])
def test_resume_at_3_to_5_equals_uninterrupted(setup, five_steps, strategy, source):
    ckpt = five_steps[source] / "run" / "checkpoints" / "step_3"
    out = _launch(setup, f"resume_{source}_to_{strategy}", f"trainer.strategy={strategy}", f"trainer.resume={ckpt}")
    resumed = read_metrics(out / "run" / "metrics.jsonl")
    straight = read_metrics(five_steps[source] / "run" / "metrics.jsonl")[3:]
    assert [m["step"] for m in resumed] == [4, 5]
    assert [m["reward/mean"] for m in resumed] == pytest.approx([m["reward/mean"] for m in straight], abs=1e-6)
    assert [m["grad_norm"] for m in resumed] == pytest.approx([m["grad_norm"] for m in straight], rel=1e-4)
    assert resumed[-1]["skipped_steps"] == 1
    _assert_close(_weights(out), _weights(five_steps[source]), atol=1e-6 if strategy == source else 1e-5)


def test_lora_and_dynamic_sampling_under_fsdp2(setup):
    out = _launch(setup, "lora_fsdp2", "trainer.strategy=fsdp2", "trainer.max_steps=2", "trainer.save_every=0",
                  "model.lora.enabled=true", "model.lora.r=4", "algo.dynamic_sampling=true",
                  "algo.dynamic_sampling_max_tries=3")
    lines = read_metrics(out / "run" / "metrics.jsonl")
    assert [m["step"] for m in lines] == [1, 2]
    calls = [[json.loads(x)["step"] for x in (out / f"prompts_rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert calls[0] == calls[1], "ranks made different numbers of generate calls"
    assert all(math.isfinite(m["grad_norm"]) and m["grad_norm"] > 0 for m in lines)
    assert all("kl" in m for m in lines)  # the reference is the policy with its adapters disabled
    adapter = load_file(str(out / "run" / "checkpoints" / "step_2" / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and any(v.abs().max() > 0 for v in lora_b), "LoRA B starts at zero and must have trained"
    final = _weights(out)
    for key, value in adapter.items():  # the saved adapter is the gathered trained one
        match = [k for k in final if k.replace(".default", "") == key]
        assert len(match) == 1 and torch.equal(final[match[0]], value), key


def test_global_mini_batches_and_offloaded_clipping_equal_one_process(setup, tmp_path, monkeypatch):
    """algo.mini_batch_size is global: a quarter of the batch gives 4 optimizer steps per trainer step on 2
    processes as on 1 (each rank takes 2 of its 8 rows per step), and the same training. The 2-process run
    also offloads FSDP2 to the CPU and clips every step (trainer.grad_clip far below the gradient norm)."""
    from tests.mhpo_vl.trainer.sharded_launcher import make_trainer

    batch = ["rollout.prompts_per_step=8", "rollout.group_size=2", "algo.mini_batch_size=4", "trainer.max_steps=2",
             "trainer.save_every=0", "trainer.strategy=fsdp2", "trainer.grad_clip=1e-3"]
    two = _launch(setup, "mini_offload", *batch, "trainer.fsdp_cpu_offload=true")
    one = tmp_path / "one"
    one.mkdir()
    monkeypatch.setenv("MHPO_TEST_OUT", str(one))
    trainer = make_trainer(load_config(RECIPE, [*setup["overrides"], *batch, f"trainer.output_dir={one / 'run'}"]))
    trainer.train()
    trainer.record_final_state()
    lines = {n: read_metrics(out / "run" / "metrics.jsonl") for n, out in (("one", one), ("two", two))}
    for name, metrics in lines.items():
        assert [m["optimizer_steps"] for m in metrics] == [4, 4], name
        assert all(m["grad_norm"] > 1e-2 for m in metrics), "clipping at 1e-3 must apply"
    assert [m["reward/mean"] for m in lines["two"]] == pytest.approx([m["reward/mean"] for m in lines["one"]], abs=1e-6)
    assert [m["grad_norm"] for m in lines["two"]] == pytest.approx([m["grad_norm"] for m in lines["one"]], rel=1e-3)
    states = [json.loads((out / "state_rank0.json").read_text()) for out in (one, two)]
    assert states[0]["optimizer_steps"] == states[1]["optimizer_steps"] == 8, states
    initial = load_file(str(setup["model_dir"] / "model.safetensors"))
    a, b = (load_file(str(out / "run" / "checkpoints" / "step_2" / "model.safetensors")) for out in (one, two))
    assert a.keys() == b.keys() == initial.keys()
    diff = math.sqrt(sum(float((a[k] - b[k]).square().sum()) for k in a))
    update = math.sqrt(sum(float((a[k] - initial[k]).square().sum()) for k in a))
    assert update > 0.1, f"the weights barely moved ({update:g}), the comparison says nothing"
    assert diff <= 1e-3 * update, f"1 and 2 processes' updates differ by {diff / update:.2e} of the update's norm"
