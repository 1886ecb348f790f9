"""RL forwards run without dropout: on-policy, the trainer's ratio pi / pi_old is exactly 1 under LoRA.

LoRA's default ``dropout: 0.05`` in the update's forward made ``loss/ratio_max`` 1.08-1.20 at steps 2-4 of
a LoRA run at lr 1e-2 (issue 27, item 9). Sampling runs without dropout, so the update must too.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mhpo_vl.config import LoraConfig, ModelConfig, config_from_dict
from mhpo_vl.models import load_policy
from mhpo_vl.models.dropout import disable_dropout
from mhpo_vl.trainer.metrics import read_metrics
from mhpo_vl.trainer.rl import run_training


@pytest.fixture(scope="module")
def easy_vqa_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("easy_vqa")
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--n", "16",
                    "--split", "train", "--output", str(out)], check=True, capture_output=True)
    return out


def test_disable_dropout_zeroes_modules_attributes_and_configs(tiny_model_dir, caplog):
    model = load_policy(ModelConfig(name_or_path=str(tiny_model_dir("qwen2_5_vl")),
                                    lora=LoraConfig(enabled=True, dropout=0.05)))
    model.train()
    text = model.config.text_config
    text.attention_dropout = 0.1  # as a config that ships attention dropout would load
    attention = [m for n, m in model.named_modules() if n.endswith("self_attn")]
    for module in attention:
        module.attention_dropout = 0.1
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(m.p == 0.05 for m in dropouts)  # peft's lora_dropout modules
    with caplog.at_level(logging.WARNING, logger="mhpo_vl.models.dropout"):
        changed = disable_dropout(model)
    assert changed == len(dropouts) + len(attention) + 1
    assert all(m.p == 0.0 for m in dropouts)
    assert all(m.attention_dropout == 0.0 for m in attention) and text.attention_dropout == 0.0
    assert model.training  # gradient checkpointing needs train mode
    assert "model.lora.dropout=0.05" in caplog.text
    caplog.clear()
    assert disable_dropout(model) == 0 and not caplog.text  # nothing left; no second warning


def test_disable_dropout_makes_train_mode_forward_deterministic(tiny_model_dir):
    model = load_policy(ModelConfig(name_or_path=str(tiny_model_dir("qwen2")),
                                    lora=LoraConfig(enabled=True, dropout=0.5)))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 1.0)  # B starts at zero: make the adapters (and their dropout) matter
    model.train()
    ids = torch.randint(0, 100, (2, 8))
    assert not torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)
    disable_dropout(model)
    first = model(input_ids=ids).logits
    model.eval()
    assert torch.equal(first, model(input_ids=ids).logits)


def test_lora_on_policy_ratio_is_one_at_every_step(tiny_model_dir, easy_vqa_dir, tmp_path):
    """HF backend, LoRA with its default settings (dropout 0.05), lr 1e-2, one optimizer step per batch."""
    (tmp_path / "odd.py").write_text("def odd_length(completion, reference, **kw):\n"
                                     "    return float(len(completion) % 2)\n")
    assert LoraConfig().dropout == 0.05
    cfg = config_from_dict({
        "model": {"name_or_path": str(tiny_model_dir("qwen2_5_vl")), "min_pixels": 3136, "max_pixels": 3136,
                  "lora": {"enabled": True}},
        "data": {"train_dir": str(easy_vqa_dir), "prompt_template": "plain", "max_prompt_tokens": 64},
        "rollout": {"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 6},
        "reward": {"components": {f"{tmp_path / 'odd.py'}:odd_length": 1.0}},  # varies: non-zero advantages
        "trainer": {"output_dir": str(tmp_path / "run"), "max_steps": 4, "lr": 1e-2, "lr_schedule": "constant",
                    "mixed_precision": "no", "save_every": 0},
        "logging": {"progress_bar": False, "plots": False},
    })
    run_training(cfg)
    lines = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [m["step"] for m in lines] == [1, 2, 3, 4]
    assert lines[-1]["grad_norm"] > 0  # the adapters moved, so a dropout would have shown
    for m in lines:
        assert abs(m["loss/ratio_max"] - 1.0) <= 1e-4, m
        assert abs(m["loss/ratio_min"] - 1.0) <= 1e-4, m
