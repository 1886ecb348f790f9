"""The memory planner: arithmetic against hand-computed values, the size table against published sizes,
the shipped recipes' verdicts, the CLI, and the estimate against a measured training step on CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mhpo_vl.cli import main
from mhpo_vl.config import config_from_dict, load_config
from mhpo_vl.models.sizes import KNOWN_MODELS, LinearShape, ModelSpec, model_spec
from mhpo_vl.trainer.plan import GIB, Setup, estimate, plan, suggest
from tests.mhpo_vl.trainer.memtrack import LiveTensorBytes

RECIPES = Path(__file__).resolve().parents[3] / "recipes"

# A hand-sized VLM: 2 decoder layers, hidden 8, MLP 16, 2 heads of 4 (1 KV head), vocab 50.
SPEC = ModelSpec(
    name="hand", source="test", total_params=1000, vision_params=100, layer_params=300, vision_block_params=40,
    layers=2, hidden=8, intermediate=16, heads=2, kv_heads=1, head_dim=4, vocab=50, vision_depth=1,
    vision_hidden=4, vision_intermediate=8, patch_size=14, merge_size=2,
    linears=(LinearShape("q_proj", 8, 8, False), LinearShape("q_proj", 8, 8, False),
             LinearShape("down_proj", 16, 8, False), LinearShape("down_proj", 16, 8, False),
             LinearShape("q_proj", 4, 4, True)),
)


def _cfg(**overrides):
    base = {"model": {"name_or_path": "hand", "dtype": "float32", "min_pixels": 784, "max_pixels": 784 * 4},
            "data": {"max_prompt_tokens": 10},
            "rollout": {"prompts_per_step": 4, "group_size": 2, "max_new_tokens": 6},
            "trainer": {"mixed_precision": "no", "micro_batch_size": 2}}
    return config_from_dict(base, [f"{k}={v}" for k, v in overrides.items()])


def test_persistent_state_by_hand():
    est = estimate(Setup(_cfg(), gpus=1, overhead_gib=0), SPEC)
    assert est.get("weights") == 1000 * 4
    assert est.get("gradients") == 900 * 4  # the frozen vision tower (100 params) has no gradients
    assert est.get("optimizer") == 2 * 900 * 4
    ddp = estimate(Setup(_cfg(), gpus=2, strategy="ddp", overhead_gib=0), SPEC)
    assert ddp.get("weights") == 4000 and ddp.get("ddp_buckets") == 3600
    fsdp = estimate(Setup(_cfg(), gpus=2, strategy="fsdp2", overhead_gib=0), SPEC)
    assert (fsdp.get("weights"), fsdp.get("gradients"), fsdp.get("optimizer")) == (2000, 1800, 3600)
    assert fsdp.get("ddp_buckets") == 0
    # root params = 1000 - 2*300 - 1*40 = 360; gathered root + 3 x largest unit (300), 4-byte compute
    assert fsdp.get("fsdp_buffers") == (360 + 3 * 300) * 4
    # generate keeps the 1000 params unsharded
    assert fsdp.get("unsharded_rollout") == 1000 * 4
    kl = estimate(Setup(_cfg(**{"algo.kl_coef": 0.1}), gpus=2, strategy="fsdp2", overhead_gib=0), SPEC)
    assert kl.get("reference") == 2000
    offload = estimate(Setup(_cfg(), gpus=2, strategy="fsdp2", overhead_gib=0, offload=True), SPEC)
    assert offload.get("weights") == offload.get("gradients") == offload.get("optimizer") == 0
    assert offload.facts["cpu_offload_bytes_per_process"] == (4000 + 3 * 3600) / 2
    assert offload.get("fsdp_buffers") == fsdp.get("fsdp_buffers")


def test_lora_counts_adapters_in_fp32_and_skips_the_frozen_tower():
    cfg = _cfg(**{"model.lora.enabled": "true", "model.lora.r": 2, "model.lora.target_modules": "[q_proj, down_proj]",
                  "model.lora.dropout": 0.0})
    est = estimate(Setup(cfg, overhead_gib=0), SPEC)
    adapters = 2 * 2 * (8 + 8) + 2 * 2 * (16 + 8)  # r * (in + out) over the 4 language-model linears
    assert est.get("weights") == 1000 * 4 + adapters * 4
    assert est.get("gradients") == adapters * 4 and est.get("optimizer") == 2 * adapters * 4


def test_activations_kv_cache_and_logits_by_hand():
    cfg = _cfg()
    est = estimate(Setup(cfg, overhead_gib=0), SPEC)
    seq = 10 + 6
    # per token per layer: 2h fp32 norm intermediates + 2h residual (fp32) + (2h + 5*q_dim + 2*kv_dim + 4I) * 4
    per_layer = 2 * 8 * 4 + 2 * 8 * 4 + (2 * 8 + 5 * 8 + 2 * 4 + 4 * 16) * 4
    assert per_layer == 640
    embeddings = 8 * (4 + 4 + 4)
    assert est.get("activations") == 2 * seq * (2 * per_layer + embeddings)  # micro-batch of 2 rows
    # 4 prompts x 2 samples = 8 sequences, K and V of 1 head x 4 dims, 2 layers, 4 bytes
    assert est.get("kv_cache") == 8 * seq * 2 * 2 * 1 * 4 * 4
    assert est.get("logits") == 2 * 6 * 50 * (4 + 4 + 8)
    checkpointed = estimate(Setup(_cfg(**{"model.gradient_checkpointing": "true"}), overhead_gib=0), SPEC)
    assert checkpointed.get("activations") == 2 * seq * (2 * 8 * 4 + per_layer + embeddings)
    # images: 784 px / 28^2 = 1 token at min, 4 at max
    assert (est.facts["image_tokens_min"], est.facts["image_tokens_max"]) == (1, 4)
    assert est.peak == est.phase("persistent") + max(est.phase("rollout"), est.phase("training"))


def test_vllm_reserve_replaces_the_kv_cache_and_can_be_lowered():
    cfg = _cfg(**{"rollout.backend": "vllm", "rollout.vllm.gpu_memory_utilization": 0.5})
    est = estimate(Setup(cfg, gpu_mem_gib=1, overhead_gib=0), SPEC)
    assert est.get("vllm") == 0.5 * GIB and est.get("kv_cache") == 0 and est.phase("rollout") == 0
    assert "TOO SMALL" not in " ".join(i.note for i in est.items)
    tiny = estimate(Setup(_cfg(**{"rollout.backend": "vllm", "rollout.vllm.gpu_memory_utilization": 1e-9}),
                          gpu_mem_gib=1, overhead_gib=0), SPEC)
    assert "TOO SMALL" in " ".join(i.note for i in tiny.items)
    # 1 GiB GPU, half reserved for vLLM: lowering the reserve is the fix on the same GPU
    big = Setup(cfg, gpu_mem_gib=0.5 / (1 - 0.05) + 1e-3, overhead_gib=0.25)
    assert not estimate(big, SPEC).fits
    (changes, fixed), *_ = suggest(big, SPEC)
    assert changes[0].startswith("rollout.vllm.gpu_memory_utilization=0.4") and fixed.fits


def test_vllm_minimum_follows_the_engine_dtype():
    """The engine's weights and KV cache take 4 bytes per value in float32 (model.dtype, auto) and 2 in
    bf16 (rollout.vllm.dtype=bfloat16)."""
    facts = {dtype: estimate(Setup(_cfg(**{"rollout.backend": "vllm", "rollout.vllm.dtype": dtype}), overhead_gib=0),
                             SPEC).facts["vllm_min_bytes"] for dtype in ("auto", "float32", "bfloat16")}
    assert facts["auto"] == facts["float32"] == 2 * facts["bfloat16"]
    assert facts["bfloat16"] > SPEC.total_params * 2


def test_two_gpus_split_the_prompts():
    one = estimate(Setup(_cfg(), gpus=1, overhead_gib=0), SPEC)
    two = estimate(Setup(_cfg(), gpus=2, overhead_gib=0), SPEC)
    assert two.get("kv_cache") == one.get("kv_cache") / 2
    assert two.facts["sequences_per_gpu"] == 4


@pytest.mark.parametrize("repo", ["Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen2.5-7B-Instruct"])
def test_table_matches_published_sizes(repo):
    spec = model_spec(repo)
    assert abs(spec.total_params / 1e9 - KNOWN_MODELS[repo].published_params) < 0.005 * spec.total_params / 1e9
    assert spec.is_vlm == ("VL" in repo)


@pytest.mark.slow
@pytest.mark.parametrize("repo", sorted(KNOWN_MODELS))
def test_every_table_entry_matches_its_published_size(repo):
    spec = model_spec(repo)
    assert abs(spec.total_params / 1e9 - KNOWN_MODELS[repo].published_params) < 0.005 * spec.total_params / 1e9


def test_local_directory_is_counted_from_its_config(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    path = tiny_model_dir("qwen2_5_vl")
    spec = model_spec(str(path))
    real = AutoModelForImageTextToText.from_pretrained(path)
    assert spec.total_params == sum(p.numel() for p in real.parameters())
    assert "config.json" in spec.source and spec.layers == real.config.text_config.num_hidden_layers


@pytest.mark.parametrize("name", ["qwen2_5_vl_7b_geo3k_mhpo", "qwen2_5_vl_7b_geo3k_grpo", "qwen2_5_vl_7b_geo3k_dapo",
                                  "qwen2_5_7b_instruct_math_mhpo", "qwen3_vl_4b_mhpo"])
def test_full_parameter_recipes_fit_8x80gb_only_sharded(name):
    cfg = load_config(RECIPES / f"{name}.yaml")
    spec = model_spec(cfg.model.name_or_path)
    assert estimate(Setup(cfg, gpus=8, gpu_mem_gib=80, strategy="fsdp2"), spec).fits
    ddp = Setup(cfg, gpus=8, gpu_mem_gib=80, strategy="ddp")
    assert not estimate(ddp, spec).fits
    (changes, fixed), *_ = suggest(ddp, spec)
    assert changes == ["trainer.strategy=fsdp2 (on the 8 GPUs)"] and fixed.fits


def test_lora_recipe_fits_one_24gb_gpu():
    cfg = load_config(RECIPES / "qwen2_5_vl_3b_lora_mhpo.yaml")
    est, fix = plan(cfg, gpus=1, gpu_mem_gib=24)
    assert est.fits and fix == []


def test_cli_json_and_table(capsys):
    recipe = str(RECIPES / "qwen2_5_vl_7b_geo3k_mhpo.yaml")
    assert main(["plan", recipe, "--gpus", "1", "--gpu-mem", "80", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["fits"] is False and doc["model"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert {"weights", "gradients", "optimizer", "activations", "kv_cache", "logits"} <= set(doc["items"])
    first, *others = doc["suggestions"]
    assert first["changes"][0].startswith("trainer.strategy=fsdp2 trainer.fsdp_cpu_offload=true")
    assert [s["gpus"] for s in others][:1] == [4] and all(s["peak_gib"] <= 80 for s in doc["suggestions"])
    assert main(["plan", recipe, "--gpus", "8"]) == 0
    out = capsys.readouterr().out
    assert "gradients" in out and "KV cache" in out and out.strip().splitlines()[-1].startswith("DOES NOT FIT")


def test_cli_reads_the_recipes_strategy_and_offload(capsys):
    recipe = str(RECIPES / "qwen2_5_vl_7b_geo3k_mhpo.yaml")
    assert main(["plan", recipe, "--gpus", "8", "--json", "trainer.strategy=fsdp2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["strategy"] == "fsdp2" and doc["fits"] and doc["suggestions"] == []
    assert main(["plan", recipe, "--gpus", "8", "--json", "trainer.strategy=fsdp2",
                 "trainer.fsdp_cpu_offload=true"]) == 0
    offloaded = json.loads(capsys.readouterr().out)
    assert offloaded["fsdp_cpu_offload"] and offloaded["items"]["weights"]["bytes"] == 0
    assert offloaded["peak_gib"] < doc["peak_gib"]


@pytest.mark.parametrize("args, message", [
    (["--gpus", "0"], "--gpus: must be >= 1"),
    (["--gpu-mem", "-3"], "--gpu-mem: must be > 0"),
    (["model.name_or_path=nosuch/model"], "not a local model directory and not in the built-in size table"),
])
def test_cli_mistakes_are_one_line(args, message, capsys):
    code = None
    try:
        code = main(["plan", str(RECIPES / "qwen2_5_vl_3b_lora_mhpo.yaml"), *args])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_tracker_counts_known_allocations():
    with LiveTensorBytes() as mode:
        a = torch.empty(1000)
        b = a * 2
        del a
        c = torch.empty(500)
    assert mode.peak == 8000 and mode.current == 6000
    del b, c


# ----------------------------------------------------------------------------- measured on CPU

TOLERANCE = 0.20  # estimate within +-20% of the measured peak of live tensor bytes


@pytest.fixture(scope="module")
def measured_trainer(tmp_path_factory):
    from mhpo_vl.models.tiny import build_tiny_model
    from mhpo_vl.trainer.rl import RLTrainer

    root = tmp_path_factory.mktemp("plan_measure")
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--n", "32",
                    "--output", str(root / "data")], check=True, capture_output=True)
    model = build_tiny_model("qwen2_5_vl", root / "model", hidden=256, layers=4, seed=0)
    cfg = config_from_dict({
        "model": {"name_or_path": str(model), "min_pixels": 3136, "max_pixels": 3136},
        "data": {"train_dir": str(root / "data"), "prompt_template": "plain", "max_prompt_tokens": 128},
        "rollout": {"prompts_per_step": 4, "group_size": 4, "max_new_tokens": 24},
        "reward": {"components": {"accuracy": 1.0}},
        "trainer": {"output_dir": str(root / "run"), "lr": 1e-3, "mixed_precision": "no", "micro_batch_size": 8,
                    "seed": 0},
        "logging": {"progress_bar": False, "plots": False},
    })
    torch.manual_seed(0)
    trainer = RLTrainer(cfg)
    trainer.train_step()  # creates the AdamW moments and leaves gradients, as in any later step
    return trainer


def _measure_step(trainer) -> tuple[float, int]:
    lengths: list[int] = []
    collate = trainer.source.collator

    class Spy:
        def __call__(self, records):
            batch = collate(records)
            lengths.append(batch.inputs["input_ids"].shape[1])
            return batch

    model = trainer.model
    roots = [*model.parameters(), *model.buffers(), *(p.grad for p in model.parameters() if p.grad is not None),
             *(v for s in trainer.optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor))]
    trainer.source.collator = Spy()
    try:
        with LiveTensorBytes(roots) as mode:
            metrics = trainer.train_step()
    finally:
        trainer.source.collator = collate
    assert metrics["response_length/max"] >= 20  # sequences near the length the estimate assumes
    return mode.peak, lengths[0]


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
def test_estimate_matches_measured_peak_of_a_training_step(measured_trainer, checkpointing):
    trainer = measured_trainer
    model = trainer.unwrapped
    cfg = trainer.cfg
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        cfg.model.gradient_checkpointing = True
        cfg.trainer.micro_batch_size = 16
    peak, prompt_tokens = _measure_step(trainer)
    spec = model_spec(cfg.model.name_or_path)
    est = estimate(Setup(cfg, gpus=1, gpu_mem_gib=1, prompt_tokens=prompt_tokens, overhead_gib=0), spec)
    assert abs(est.peak - peak) <= TOLERANCE * peak, (est.peak / 2**20, peak / 2**20)
    assert est.peak < GIB


def test_mini_batch_is_global_so_each_gpu_takes_its_share():
    # 4 prompts x G2 = 8 rows over 2 GPUs (4 each); a global mini-batch of 4 rows is 2 rows per GPU
    cfg = _cfg(**{"algo.mini_batch_size": 4, "trainer.micro_batch_size": 0})
    assert estimate(Setup(cfg, gpus=2, overhead_gib=0), SPEC).facts["micro_batch_rows"] == 2
    assert estimate(Setup(cfg, gpus=1, overhead_gib=0), SPEC).facts["micro_batch_rows"] == 4
    whole = _cfg(**{"trainer.micro_batch_size": 0})
    assert estimate(Setup(whole, gpus=2, overhead_gib=0), SPEC).facts["micro_batch_rows"] == 4


def test_lora_dropout_adds_no_activations_because_rl_runs_without_dropout():
    def activations(dropout: float) -> float:
        cfg = _cfg(**{"model.lora.enabled": "true", "model.lora.r": 2, "model.lora.dropout": dropout})
        return estimate(Setup(cfg, overhead_gib=0), SPEC).get("activations")

    assert activations(0.05) == activations(0.0)
