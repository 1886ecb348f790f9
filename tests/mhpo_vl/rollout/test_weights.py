"""Trainer tensors -> engine weights: wrapper names stripped, LoRA merged exactly, frozen parts left out."""

from __future__ import annotations

import pytest
import torch

from mhpo_vl.config import LoraConfig, ModelConfig
from mhpo_vl.models import load_policy
from mhpo_vl.rollout.weights import clean_name, engine_weights, merge_lora, trainable_names


def test_clean_name_strips_wrappers():
    assert clean_name("module.base_model.model.model.language_model.x.weight") == "model.language_model.x.weight"
    assert clean_name("_orig_mod.lm_head.weight") == "lm_head.weight"
    assert clean_name("model.layers.0._checkpoint_wrapped_module.mlp.weight") == "model.layers.0.mlp.weight"


def test_full_model_sends_only_trainable_tensors_with_hf_names(tiny_model_dir):
    model = load_policy(ModelConfig(name_or_path=str(tiny_model_dir("qwen2_5_vl"))))  # vision tower frozen
    state = model.state_dict()
    sent = dict(engine_weights(state.items(), model))
    assert sent and not any("visual" in n for n in sent)
    assert set(sent) == trainable_names(model)
    assert all(sent[n] is state[n] for n in sent)  # no copies for plain tensors
    everything = dict(engine_weights(state.items(), model, only_trainable=False))
    assert set(everything) == set(state)


def test_lora_weights_are_merged_like_peft(tiny_model_dir):
    cfg = ModelConfig(name_or_path=str(tiny_model_dir("qwen2_5_vl")),
                      lora=LoraConfig(enabled=True, r=4, alpha=8, dropout=0.0))
    model = load_policy(cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # B starts at zero: make the adapters matter
    sent = dict(engine_weights(model.state_dict().items(), model))
    assert sent and not any("lora_" in n or "base_layer" in n or "visual" in n for n in sent)
    merged = model.merge_and_unload().state_dict()
    for name, tensor in sent.items():
        assert torch.allclose(tensor, merged[name], atol=1e-6), name
    assert any(not torch.allclose(sent[n], load_policy(ModelConfig(name_or_path=cfg.name_or_path)).state_dict()[n])
               for n in list(sent)[:3])


def test_merge_lora_formula_and_dtype():
    base = torch.randn(3, 4, dtype=torch.bfloat16)
    a, b = torch.randn(2, 4), torch.randn(3, 2)
    out = merge_lora(base, a, b, 0.5)
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), (base.float() + 0.5 * b @ a).to(torch.bfloat16).float())


def test_unpaired_lora_tensor_is_an_error(tiny_model_dir):
    model = load_policy(ModelConfig(name_or_path=str(tiny_model_dir("qwen2"))))
    with pytest.raises(RuntimeError, match="without their partners"):
        list(engine_weights([("base_model.model.x.q_proj.lora_A.default.weight", torch.zeros(2, 2))], model,
                            only_trainable=False))
