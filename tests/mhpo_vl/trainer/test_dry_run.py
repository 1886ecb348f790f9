"""`dry_run_config`: architecture inference, generated data, and what it substitutes versus keeps."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from mhpo_vl.config import config_from_dict, load_config
from mhpo_vl.data import PromptDataset
from mhpo_vl.errors import UserError
from mhpo_vl.trainer.dry_run import _mini_batch, dry_run_config, infer_arch, write_text_records

RECIPES = Path(__file__).resolve().parents[3] / "recipes"


@pytest.mark.parametrize(("name", "arch"), [
    ("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl"),
    ("Qwen/Qwen2_5_VL-3B", "qwen2_5_vl"),
    ("Qwen/Qwen3-VL-4B-Instruct", "qwen3_vl"),
    ("Qwen/Qwen2-VL-2B-Instruct", "qwen2_vl"),
    ("OpenGVLab/Some-VL-8B", "qwen2_5_vl"),
    ("Qwen/Qwen2.5-7B-Instruct", "qwen2"),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "qwen2"),
    ("runs/demo/sft", "qwen2_5_vl"),  # a local path that does not exist yet: the toolkit's main target
])
def test_infer_arch_from_name(name, arch):
    assert infer_arch(name)[0] == arch


@pytest.mark.parametrize(("config", "arch"), [
    ({"model_type": "qwen3_vl"}, "qwen3_vl"),
    ({"model_type": "qwen2"}, "qwen2"),
    ({"model_type": "llama"}, "qwen2"),
    ({"model_type": "llava", "vision_config": {}}, "qwen2_5_vl"),
])
def test_infer_arch_reads_local_config(tmp_path, config, arch):
    (tmp_path / "Qwen2-VL-named-dir").mkdir()  # the name must lose to config.json
    (tmp_path / "Qwen2-VL-named-dir" / "config.json").write_text(json.dumps(config))
    assert infer_arch(str(tmp_path / "Qwen2-VL-named-dir"))[0] == arch


def test_infer_arch_bad_config_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="config.json"):
        infer_arch(str(tmp_path))


@pytest.mark.parametrize(("mini", "old", "new", "want"), [
    (0, 256, 4, 0), (256, 256, 4, 0), (128, 256, 4, 2), (64, 256, 4, 1), (96, 288, 4, 1), (1, 2, 4, 2),
])
def test_mini_batch_keeps_optimizer_steps_per_rollout(mini, old, new, want):
    got = _mini_batch(mini, old, new)
    assert got == want
    assert got == 0 or new % got == 0


def test_text_records_load_as_math(tmp_path):
    records = PromptDataset(write_text_records(tmp_path, n=5)).records
    assert len(records) == 5
    assert all(r["images"] == [] and r["answer_type"] == "math" for r in records)
    assert records[0]["prompt"] == "What is 3 + 2?" and records[0]["answer"] == "5"


def test_vlm_recipe_substitutions_keep_algo_and_reward(tmp_path):
    cfg = load_config(RECIPES / "qwen2_5_vl_7b_geo3k_mhpo.yaml",
                      ["rollout.backend=vllm", "algo.kl_coef=0.01", "algo.ppo_epochs=2", "logging.wandb=true",
                       "model.attn_implementation=flash_attention_2"])  # the documented opt-in
    lines: list[str] = []
    out = dry_run_config(cfg, tmp_path, report=lines.append)
    text = "\n".join(lines)
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct"  # the input is not modified
    assert Path(out.model.name_or_path, "config.json").is_file()
    assert json.loads(Path(out.model.name_or_path, "config.json").read_text())["model_type"] == "qwen2_5_vl"
    records = PromptDataset(out.data.train_dir, out.data.train_split).records
    assert len(records) == 16 and all(len(r["images"]) == 1 for r in records)
    assert (out.rollout.prompts_per_step, out.rollout.group_size, out.rollout.max_new_tokens) == (2, 2, 8)
    assert (out.trainer.max_steps, out.trainer.save_every, out.trainer.eval_every) == (2, 0, 0)
    assert Path(out.trainer.output_dir).parent == tmp_path
    assert out.model.min_pixels == out.model.max_pixels == 56 * 56
    assert out.model.dtype == "float32" and out.trainer.mixed_precision == "no"
    assert out.model.attn_implementation == "sdpa" and "flash_attention_2" in text
    if importlib.util.find_spec("vllm") is None:  # kept where vLLM is installed (make setup-vllm)
        assert out.rollout.backend == "hf" and "vLLM" in text
    assert out.logging.wandb is False
    assert out.algo.mini_batch_size == 1  # 4 optimizer steps per rollout, as the recipe's 256 / 64
    assert out.algo == dataclasses.replace(cfg.algo, mini_batch_size=1)  # the rest of algo is kept
    assert out.reward == cfg.reward
    assert out.model.gradient_checkpointing and out.model.lora == cfg.model.lora
    assert "model.name_or_path: 'Qwen/Qwen2.5-VL-7B-Instruct' ->" in text


def test_text_recipe_gets_text_model_and_data(tmp_path):
    cfg = config_from_dict({"model": {"name_or_path": "Qwen/Qwen2.5-7B-Instruct", "lora": {"enabled": True}},
                            "data": {"train_dir": "nowhere", "prompt_template": "boxed"}})
    out = dry_run_config(cfg, tmp_path, report=lambda _: None)
    assert json.loads(Path(out.model.name_or_path, "config.json").read_text())["model_type"] == "qwen2"
    assert all(r["images"] == [] for r in PromptDataset(out.data.train_dir).records)
    assert out.model.lora.enabled and out.data.prompt_template == "boxed"
    assert out.model.min_pixels == cfg.model.min_pixels  # no images: pixel bounds untouched
