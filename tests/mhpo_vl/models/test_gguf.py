"""GGUF import: a tiny llama model written as GGUF with the `gguf` package, loaded, converted, reloaded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

gguf = pytest.importorskip("gguf")

from mhpo_vl.cli import main as cli_main  # noqa: E402
from mhpo_vl.config import ModelConfig  # noqa: E402
from mhpo_vl.errors import UserError  # noqa: E402
from mhpo_vl.models import load_policy, load_processor  # noqa: E402
from mhpo_vl.models.gguf import SOURCE_FILE, convert_gguf, packaged_gguf, require_gguf, resolve_gguf  # noqa: E402

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 32, 2, 4, 2, 64


def _byte_vocab() -> list[str]:
    """GPT-2 byte-level symbols for all 256 bytes (what a BPE vocabulary without merges needs)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return list(bytes_to_unicode().values())


def _permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's q/k row order (interleaved rotary halves), which transformers undoes on load."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tiny_llama() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokens = SPECIALS + _byte_vocab()
    config = LlamaConfig(vocab_size=len(tokens), hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=128,
                         rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
                         pad_token_id=0, initializer_range=0.2)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def write_tiny_gguf(path: Path) -> torch.nn.Module:
    """Write a random tiny llama (float32, byte-level BPE tokenizer, ChatML template) as GGUF; return it."""
    model = _tiny_llama()
    tokens = SPECIALS + _byte_vocab()
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-test-llama")
    w.add_context_length(128)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(HIDDEN // HEADS)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL] * len(SPECIALS) + [gguf.TokenType.NORMAL] * (len(tokens) - len(SPECIALS)))
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_merges([])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(0)
    w.add_chat_template(CHAT_TEMPLATE)
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"].numpy())
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for i in range(LAYERS):
        for hf, gg in names.items():
            t = sd[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                t = _permute(t, HEADS)
            elif gg == "attn_k":
                t = _permute(t, KV_HEADS)
            w.add_tensor(f"blk.{i}.{gg}.weight", t.contiguous().numpy())
    w.add_tensor("output_norm.weight", sd["model.norm.weight"].numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    path = tmp_path_factory.mktemp("gguf") / "tiny.F32.gguf"
    return path, write_tiny_gguf(path)


def _logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def test_convert_then_reload_matches_the_original(tiny_gguf, tmp_path: Path) -> None:
    path, original = tiny_gguf
    out = convert_gguf(path, tmp_path / "hf")
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", SOURCE_FILE):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    model = load_policy(ModelConfig(name_or_path=str(out)))
    ids = [5, 40, 77, 120, 9]
    torch.testing.assert_close(_logits(model, ids), _logits(original, ids), rtol=1e-4, atol=1e-4)
    tok = load_processor(ModelConfig(name_or_path=str(out)))
    text = tok.apply_chat_template([{"role": "user", "content": "2+2?"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(tok("hello 12")["input_ids"]) == "hello 12"
    assert tok.eos_token == "<|im_end|>" and tok.padding_side == "left"


def test_convert_is_a_no_op_the_second_time(tiny_gguf, tmp_path: Path) -> None:
    path, _ = tiny_gguf
    out = convert_gguf(path, tmp_path / "hf")
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    convert_gguf(path, out)
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    convert_gguf(path, out, force=True)
    assert (out / "model.safetensors").stat().st_mtime_ns != stamp


def test_load_policy_reads_gguf_directly_and_the_model_saves(tiny_gguf, tmp_path: Path) -> None:
    path, original = tiny_gguf
    cfg = ModelConfig(name_or_path=str(path.parent), gguf_file=path.name)
    model = load_policy(cfg)
    assert getattr(model, "hf_quantizer", None) is None
    ids = [3, 4, 200]
    torch.testing.assert_close(_logits(model, ids), _logits(original, ids), rtol=1e-4, atol=1e-4)
    assert load_processor(cfg).eos_token == "<|im_end|>"
    model.save_pretrained(tmp_path / "saved")  # refused while the GGUF quantizer is attached
    assert (tmp_path / "saved" / "model.safetensors").is_file()


def test_cli_convert_gguf(tiny_gguf, tmp_path: Path, capsys) -> None:
    path, _ = tiny_gguf
    assert cli_main(["convert-gguf", "--gguf", str(path), "--out", str(tmp_path / "cli")]) == 0
    assert "converted to" in capsys.readouterr().out
    assert (tmp_path / "cli" / "model.safetensors").is_file()


def test_clear_errors(tmp_path: Path, monkeypatch, capsys) -> None:
    with pytest.raises(UserError, match="GGUF file not found"):
        resolve_gguf(tmp_path / "missing.gguf")
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="not a .gguf file"):
        resolve_gguf("model.bin", tmp_path)
    with pytest.raises(UserError, match="not installed"):
        packaged_gguf("no_such_model_package_xyz")
    with pytest.raises(UserError, match="holds 0 .gguf files"):
        packaged_gguf("json")
    monkeypatch.setitem(sys.modules, "gguf", None)  # the package as if not installed
    with pytest.raises(UserError, match="needs the `gguf` package"):
        require_gguf()
    assert cli_main(["convert-gguf", "--gguf", str(tmp_path / "missing.gguf"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "GGUF file not found" in err[0]
