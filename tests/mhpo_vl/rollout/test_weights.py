"""Trainer tensors -> engine weights: wrapper names stripped, LoRA merged exactly, frozen parts left out."""

from __future__ import annotations

import pytest
import torch

from mhpo_vl.config import LoraConfig, ModelConfig
from mhpo_vl.models import load_policy
from mhpo_vl.rollout.weights import (
    FUSED_MODULES,
    clean_name,
    engine_layer,
    engine_weights,
    merge_lora,
    names_to_send,
    sync_filter,
    trainable_names,
)


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


def test_engine_layer_names_the_fused_layer():
    assert engine_layer("model.layers.3.self_attn.k_proj") == "model.layers.3.self_attn.qkv_proj"
    assert engine_layer("model.language_model.layers.0.mlp.up_proj") == "model.language_model.layers.0.mlp.gate_up_proj"
    assert engine_layer("model.layers.3.self_attn.o_proj") == "model.layers.3.self_attn.o_proj"
    assert engine_layer("model.visual.blocks.0.attn.qkv") == "model.visual.blocks.0.attn.qkv"  # fused in HF too
    assert engine_layer("q_proj") == "qkv_proj"
    assert set(FUSED_MODULES) == {"qkv_proj", "gate_up_proj"}


@pytest.mark.parametrize("arch", ["qwen2", "qwen2_5_vl"])
@pytest.mark.parametrize("targets, layer_parts", [
    (["q_proj", "v_proj"], {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}),
    (["gate_proj"], {"mlp.gate_proj", "mlp.up_proj"}),
    (["o_proj"], {"self_attn.o_proj"}),
])
def test_lora_on_part_of_a_fused_layer_sends_the_whole_layer(arch, targets, layer_parts, tiny_model_dir):
    """vLLM rebuilds a reloaded fused layer from what it receives: LoRA on q/v only must send k too
    (weight and bias), untouched and unmerged, and nothing outside the touched layers."""
    cfg = ModelConfig(name_or_path=str(tiny_model_dir(arch)),
                      lora=LoraConfig(enabled=True, r=4, alpha=8, dropout=0.0, target_modules=targets))
    model = load_policy(cfg)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    state = model.state_dict()
    sent = dict(engine_weights(state.items(), model))
    assert set(sent) == names_to_send(model)
    layers = {n.rpartition(".")[0] for n in sent}
    decoder = sorted({n.split(".self_attn.")[0].split(".mlp.")[0] for n in layers})
    assert len(decoder) == model.get_base_model().config.get_text_config().num_hidden_layers
    assert layers == {f"{d}.{part}" for d in decoder for part in layer_parts}
    expected = {f"{layer}.{kind}" for layer in layers for kind in ("weight", "bias")
                if f"base_model.model.{layer}.{kind}" in state or f"base_model.model.{layer}.base_layer.{kind}" in state}
    assert set(sent) == expected
    if "self_attn.k_proj" in layer_parts:
        assert any(n.endswith("k_proj.bias") for n in sent)  # Qwen2 has q/k/v biases: they are part of the layer
    merged = model.merge_and_unload().state_dict()
    for name, tensor in sent.items():
        assert torch.allclose(tensor, merged[name], atol=1e-6), name
    # the untouched parts are the trainer's own tensors, sent as they are
    for name in sent:
        if not any(f".{t}." in name for t in targets):
            assert sent[name] is state[f"base_model.model.{name}"], name


@pytest.mark.parametrize("arch,targets", [("qwen2_5_vl", ["q_proj", "v_proj"]), ("qwen2", ["o_proj"]),
                                          ("qwen2", None)])
def test_sync_filter_gathers_only_what_the_engine_gets(arch, targets, tiny_model_dir):
    """Filtering raw state-dict names before the (FSDP2) gather sends exactly what the unfiltered sync sends,
    and leaves out the frozen tensors: most of a LoRA model, and the tied LM head of a full one."""
    lora = LoraConfig(enabled=targets is not None, r=2, alpha=4, dropout=0.0, target_modules=targets or ["q_proj"])
    model = load_policy(ModelConfig(name_or_path=str(tiny_model_dir(arch)), lora=lora))
    state = model.state_dict()
    needed = sync_filter(model)
    filtered = {n: t for n, t in state.items() if needed(n)}
    full = dict(engine_weights(state.items(), model))
    assert dict(engine_weights(filtered.items(), model)).keys() == full.keys()
    for name, tensor in engine_weights(filtered.items(), model):
        assert torch.equal(tensor, full[name]), name
    left_out = set(state) - set(filtered)
    assert any("embed_tokens" in n for n in left_out) == (targets is not None)
    if targets is not None:
        assert any("o_proj" in n for n in left_out) == ("o_proj" not in targets)
        assert len(filtered) < len(state) / 2
    elif model.config.get_text_config().tie_word_embeddings:
        assert "lm_head.weight" in left_out  # the same tensor as the embeddings: never gathered twice
