"""Tiny, randomly initialised models of the real Qwen architectures, built offline from configs.

`build_tiny_model(arch, out_dir)` writes a directory the standard Auto classes load with no network:
config + safetensors weights, a locally trained tokenizer with Qwen's special tokens and chat
template, and (for VLMs) the image processor files. Deterministic for a given seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    PretrainedConfig,
    Qwen2_5_VLConfig,
    Qwen2Config,
    Qwen2VLConfig,
    Qwen2VLImageProcessorPil,
    Qwen3VLConfig,
)

from mhpo_vl.models.tokenizer import build_tokenizer

ARCHS = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen2")
VLM_ARCHS = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
# Published processor classes and video processors, named in the saved files so that, on a machine
# with torchvision, AutoProcessor builds the full processor. Without torchvision, load_processor
# builds an image-only one from the same files.
_PROCESSOR_CLASS = {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor",
                    "qwen3_vl": "Qwen3VLProcessor"}
_VIDEO_PROCESSOR_CLASS = {"qwen2_vl": "Qwen2VLVideoProcessor", "qwen2_5_vl": "Qwen2VLVideoProcessor",
                          "qwen3_vl": "Qwen3VLVideoProcessor"}


def _mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (t, h, w) like Qwen's [16, 24, 24] for head_dim 128."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def tiny_config(
    arch: str,
    vocab_size: int,
    *,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 4,
    vision_hidden: int = 64,
    vision_depth: int = 1,
    initializer_range: float = 0.1,
    special_ids: dict[str, int] | None = None,
) -> PretrainedConfig:
    """A config of the real architecture ``arch`` at tiny size.

    ``initializer_range`` 0.1 (not the default 0.02) lets a tiny model learn to use the image at all.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
    ids = special_ids or {}
    head_dim = hidden // heads
    text = dict(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), max_position_embeddings=4096,
        initializer_range=initializer_range, bos_token_id=ids.get("bos"), eos_token_id=ids.get("eos"),
        pad_token_id=ids.get("pad"), tie_word_embeddings=True,
    )
    if arch == "qwen2":
        return Qwen2Config(**text)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": _mrope_section(head_dim)}
    vision_heads = max(1, vision_hidden // 32)
    top = dict(
        image_token_id=ids["image"], video_token_id=ids["video"], vision_start_token_id=ids["vision_start"],
        vision_end_token_id=ids["vision_end"], initializer_range=initializer_range, tie_word_embeddings=True,
    )
    if arch == "qwen2_vl":
        vision = dict(depth=vision_depth, embed_dim=vision_hidden, hidden_size=hidden, num_heads=vision_heads,
                      mlp_ratio=2, initializer_range=initializer_range)
        return Qwen2VLConfig(text_config=text, vision_config=vision, **top)
    if arch == "qwen2_5_vl":
        vision = dict(depth=vision_depth, hidden_size=vision_hidden, intermediate_size=vision_hidden * 2,
                      out_hidden_size=hidden, num_heads=vision_heads, window_size=112,
                      fullatt_block_indexes=list(range(vision_depth)), initializer_range=initializer_range)
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **top)
    text["head_dim"] = head_dim
    text["rope_parameters"]["mrope_interleaved"] = True
    vision = dict(depth=vision_depth, hidden_size=vision_hidden, intermediate_size=vision_hidden * 2,
                  out_hidden_size=hidden, num_heads=vision_heads, patch_size=16, num_position_embeddings=64,
                  deepstack_visual_indexes=[0], initializer_range=initializer_range)
    return Qwen3VLConfig(text_config=text, vision_config=vision, **top)


def _image_processor(arch: str, min_pixels: int, max_pixels: int) -> Qwen2VLImageProcessorPil:
    patch = 16 if arch == "qwen3_vl" else 14
    kwargs = dict(patch_size=patch, merge_size=2, temporal_patch_size=2,
                  size={"shortest_edge": min_pixels, "longest_edge": max_pixels})
    if arch == "qwen3_vl":  # Qwen3-VL normalises to [-1, 1]
        kwargs.update(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    return Qwen2VLImageProcessorPil(**kwargs)


def _save_processor_files(arch: str, out: Path, image_processor: Qwen2VLImageProcessorPil, chat_template: str) -> None:
    """Write processor_config.json (+ a video processor config) in the published Qwen layout."""
    ip = image_processor.to_dict()
    ip["image_processor_type"] = "Qwen2VLImageProcessor"
    ip.pop("processor_class", None)
    (out / "processor_config.json").write_text(
        json.dumps({"image_processor": ip, "processor_class": _PROCESSOR_CLASS[arch]}, indent=2)
    )
    (out / "preprocessor_config.json").write_text(json.dumps(ip, indent=2))
    video = {k: ip[k] for k in ("patch_size", "merge_size", "temporal_patch_size", "image_mean", "image_std")}
    video.update(video_processor_type=_VIDEO_PROCESSOR_CLASS[arch], processor_class=_PROCESSOR_CLASS[arch])
    (out / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))
    (out / "chat_template.jinja").write_text(chat_template)


# Named sizes of the same architectures (keyword arguments of build_tiny_model): "tiny" for tests and the
# demo; "larger" (~25M parameters for qwen2_vl: hidden 512, 10 layers, 8 heads of 64 (a head size vLLM's
# CPU attention supports), 2 vision blocks) for speed measurements where the model's compute, not
# per-call overhead, dominates (`make bench`).
MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": {},
    "larger": {"hidden": 512, "layers": 10, "heads": 8, "vision_hidden": 128, "vision_depth": 2},
}


def build_model_of_size(arch: str, out_dir: str | Path, size: str, **kwargs) -> Path:
    """``build_tiny_model`` at a named size of :data:`MODEL_SIZES` (extra keywords pass through)."""
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}; choose one of {', '.join(MODEL_SIZES)}")
    return build_tiny_model(arch, out_dir, **{**MODEL_SIZES[size], **kwargs})


def build_tiny_model(
    arch: str,
    out_dir: str | Path,
    *,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 4,
    vision_hidden: int = 64,
    vision_depth: int = 1,
    seed: int = 0,
    initializer_range: float = 0.1,
    min_pixels: int = 28 * 28,
    max_pixels: int = 224 * 224,
    extra_texts: list[str] | None = None,
) -> Path:
    """Build, randomly initialise (seeded) and save a tiny model of ``arch`` with its tokenizer/processor."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(extra_texts=extra_texts)
    tid = tokenizer.convert_tokens_to_ids
    ids = {"bos": None, "eos": tokenizer.eos_token_id, "pad": tokenizer.pad_token_id,
           "image": tid("<|image_pad|>"), "video": tid("<|video_pad|>"),
           "vision_start": tid("<|vision_start|>"), "vision_end": tid("<|vision_end|>")}
    config = tiny_config(arch, len(tokenizer), hidden=hidden, layers=layers, heads=heads,
                         vision_hidden=vision_hidden, vision_depth=vision_depth,
                         initializer_range=initializer_range, special_ids=ids)
    torch.manual_seed(seed)
    auto = AutoModelForCausalLM if arch == "qwen2" else AutoModelForImageTextToText
    model = auto.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if arch in VLM_ARCHS:
        _save_processor_files(arch, out, _image_processor(arch, min_pixels, max_pixels), tokenizer.chat_template)
    return out
