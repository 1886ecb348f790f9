"""`mhpo-vl merge-lora` on a real LoRA training checkpoint: merged logits equal the adapter model's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForImageTextToText

from mhpo_vl.cli import main
from mhpo_vl.config import config_from_dict
from mhpo_vl.data import PromptCollator, PromptDataset
from mhpo_vl.models import load_policy, load_processor
from mhpo_vl.trainer import checkpoint as ckpt
from mhpo_vl.trainer.rl import run_training


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    """A 2-step LoRA RL run whose vision tower trains too (adapter + extra_trainable weights)."""
    root = tmp_path_factory.mktemp("lora_run")
    # A reward that varies between samples of a random model, so the advantages (and updates) are not zero.
    (root / "reward.py").write_text("def chars(completion, reference, **_):\n    return min(len(completion), 12) / 12\n")
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--n", "16",
                    "--output", str(root / "data")], check=True, capture_output=True)
    cfg = config_from_dict({
        "model": {"name_or_path": str(tiny_model_dir("qwen2_5_vl")), "min_pixels": 3136, "max_pixels": 3136,
                  "freeze_vision_tower": False,
                  "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0}},
        "data": {"train_dir": str(root / "data"), "prompt_template": "plain", "max_prompt_tokens": 64},
        "rollout": {"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 3},
        "reward": {"components": {f"{root / 'reward.py'}:chars": 1.0}},
        "trainer": {"output_dir": str(root / "run"), "max_steps": 2, "lr": 5e-2, "lr_schedule": "constant",
                    "mixed_precision": "no"},
        "logging": {"progress_bar": False, "plots": False},
    })
    run_training(cfg)
    return cfg, root


def _batch(processor, cfg):
    records = PromptDataset(cfg.data.train_dir, "train").records[:3]
    collator = PromptCollator(processor, template="plain", min_pixels=cfg.model.min_pixels,
                              max_pixels=cfg.model.max_pixels, max_prompt_tokens=64)
    return collator(records).inputs


def _logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**inputs).logits


def test_merged_model_equals_adapter_model_and_loads_in_eval(lora_run, tmp_path, capsys):
    cfg, root = lora_run
    step_dir = ckpt.latest_checkpoint(root / "run")
    assert (step_dir / "adapter_config.json").is_file() and (step_dir / ckpt.EXTRA_TRAINABLE).is_file()
    out = tmp_path / "merged"
    assert main(["merge-lora", str(root / "run"), "--out", str(out)]) == 0  # a run dir: its latest checkpoint
    assert "merged model written to" in capsys.readouterr().out
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert not (out / "adapter_config.json").exists()

    adapter = load_policy(cfg.model)  # built as the trainer builds it, then the checkpoint loaded into it
    ckpt.load_checkpoint(step_dir, model=adapter, optimizer=None, scheduler=None, restore_rng=False)
    merged = AutoModelForImageTextToText.from_pretrained(out)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    processor = load_processor(cfg.model.__class__(name_or_path=str(out), min_pixels=3136, max_pixels=3136))
    inputs = _batch(processor, cfg)
    want = _logits(adapter, inputs)
    got = _logits(merged, inputs)
    base = _logits(AutoModelForImageTextToText.from_pretrained(cfg.model.name_or_path), inputs)
    assert (want - base).abs().max() > 1e-2  # training changed the model: the comparison can fail
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)

    from eval.__main__ import main as eval_main
    from tests.eval.fixtures import write_geo3k

    write_geo3k(tmp_path / "bench")
    code = eval_main(["run", "--model", str(out), "--benchmarks", "geo3k", "--data-dir", str(tmp_path / "bench"),
                      "--output", str(tmp_path / "eval"), "--limit", "1", "--max-new-tokens", "3", "--no-progress"])
    assert code == 0
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["benchmarks"]["geo3k"]["n"] == 1


def test_dtype_option_and_existing_output(lora_run, tmp_path, capsys):
    _, root = lora_run
    step_dir = ckpt.latest_checkpoint(root / "run")
    out = tmp_path / "bf16"
    assert main(["merge-lora", str(step_dir), "--out", str(out), "--dtype", "bfloat16"]) == 0
    assert AutoModelForImageTextToText.from_pretrained(out, dtype="auto").dtype == torch.bfloat16
    assert main(["merge-lora", str(step_dir), "--out", str(out)]) == 2
    assert "exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert main(["merge-lora", str(step_dir), "--out", str(out), "--overwrite"]) == 0


@pytest.mark.parametrize("kind", ["missing", "full", "no_base"])
def test_mistakes_are_one_line_errors(kind, tiny_model_dir, lora_run, tmp_path, capsys):
    if kind == "missing":
        source, message = tmp_path / "nope", "checkpoint not found"
    elif kind == "full":
        source, message = tiny_model_dir("qwen2_5_vl"), "a full-model checkpoint"
    else:
        _, root = lora_run
        source = tmp_path / "copy"
        source.mkdir()
        step_dir = ckpt.latest_checkpoint(root / "run")
        config = json.loads((step_dir / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = None
        (source / "adapter_config.json").write_text(json.dumps(config))
        message = "names no base model; pass --base"
    assert main(["merge-lora", str(source), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["merge-lora", "--help"])
    out = capsys.readouterr().out
    for option in ("--out", "--base", "--dtype", "--overwrite"):
        assert option in out
