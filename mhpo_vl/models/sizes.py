"""Model sizes without weights: parameter counts and shapes from a config, built on the meta device.

`model_spec(name_or_path)` reads a local directory's ``config.json`` or, offline, the built-in table
``KNOWN_MODELS`` of the supported models' published configs, builds the model on the ``meta`` device
(no memory, no download) and returns a :class:`ModelSpec`: parameter counts (total, vision tower,
largest decoder layer / vision block, the rest), the dimensions that size activations and the KV
cache, and every ``nn.Linear`` shape (for LoRA adapter sizes).

Sources of the table: each entry's dimensions are those of the model's ``config.json`` on the Hugging
Face hub (repo named in the entry); ``published_params`` is the parameter count the hub shows for the
repo's safetensors weights. A test checks that the meta-built count matches the published one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from mhpo_vl.errors import UserError

# ----------------------------------------------------------------------------- published configs

_QWEN25_VL_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14,
                         spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                         fullatt_block_indexes=[7, 15, 23, 31])
_QWEN2_VL_VISION = dict(depth=32, embed_dim=1280, mlp_ratio=4, num_heads=16, patch_size=14, spatial_merge_size=2,
                        temporal_patch_size=2)
_QWEN3_VL_SMALL_VISION = dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, patch_size=16,
                              spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304,
                              deepstack_visual_indexes=[5, 11, 17])
_QWEN3_VL_LARGE_VISION = dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, patch_size=16,
                              spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304,
                              deepstack_visual_indexes=[8, 16, 24])


def _text(hidden: int, inter: int, layers: int, heads: int, kv: int, vocab: int, tied: bool,
          head_dim: int | None = None) -> dict[str, Any]:
    out = dict(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=heads,
               num_key_value_heads=kv, vocab_size=vocab, tie_word_embeddings=tied)
    if head_dim:
        out["head_dim"] = head_dim
    return out


@dataclass(frozen=True)
class KnownModel:
    """A supported model's published config (``config.json`` on the hub repo ``repo``) and size."""

    repo: str
    model_type: str  # qwen2_vl | qwen2_5_vl | qwen3_vl | qwen2 | qwen3
    text: dict[str, Any]
    vision: dict[str, Any] = field(default_factory=dict)
    published_params: float = 0.0  # billions, as shown on the hub page (safetensors metadata)


KNOWN_MODELS: dict[str, KnownModel] = {m.repo: m for m in (
    KnownModel("Qwen/Qwen2-VL-2B-Instruct", "qwen2_vl", _text(1536, 8960, 28, 12, 2, 151936, True),
               {**_QWEN2_VL_VISION, "hidden_size": 1536}, 2.21),
    KnownModel("Qwen/Qwen2-VL-7B-Instruct", "qwen2_vl", _text(3584, 18944, 28, 28, 4, 152064, False),
               {**_QWEN2_VL_VISION, "hidden_size": 3584}, 8.29),
    KnownModel("Qwen/Qwen2-VL-72B-Instruct", "qwen2_vl", _text(8192, 29568, 80, 64, 8, 152064, False),
               {**_QWEN2_VL_VISION, "hidden_size": 8192}, 73.4),
    KnownModel("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5_vl", _text(2048, 11008, 36, 16, 2, 151936, True),
               {**_QWEN25_VL_VISION, "out_hidden_size": 2048}, 3.75),
    KnownModel("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl", _text(3584, 18944, 28, 28, 4, 152064, False),
               {**_QWEN25_VL_VISION, "out_hidden_size": 3584}, 8.29),
    KnownModel("Qwen/Qwen2.5-VL-32B-Instruct", "qwen2_5_vl", _text(5120, 27648, 64, 40, 8, 152064, False),
               {**_QWEN25_VL_VISION, "out_hidden_size": 5120}, 33.5),
    KnownModel("Qwen/Qwen2.5-VL-72B-Instruct", "qwen2_5_vl", _text(8192, 29568, 80, 64, 8, 152064, False),
               {**_QWEN25_VL_VISION, "out_hidden_size": 8192}, 73.4),
    KnownModel("Qwen/Qwen3-VL-2B-Instruct", "qwen3_vl", _text(2048, 6144, 28, 16, 8, 151936, True, 128),
               {**_QWEN3_VL_SMALL_VISION, "out_hidden_size": 2048}, 2.13),
    KnownModel("Qwen/Qwen3-VL-4B-Instruct", "qwen3_vl", _text(2560, 9728, 36, 32, 8, 151936, True, 128),
               {**_QWEN3_VL_SMALL_VISION, "out_hidden_size": 2560}, 4.44),
    KnownModel("Qwen/Qwen3-VL-8B-Instruct", "qwen3_vl", _text(4096, 12288, 36, 32, 8, 151936, False, 128),
               {**_QWEN3_VL_LARGE_VISION, "out_hidden_size": 4096}, 8.77),
    KnownModel("Qwen/Qwen3-VL-32B-Instruct", "qwen3_vl", _text(5120, 25600, 64, 64, 8, 151936, False, 128),
               {**_QWEN3_VL_LARGE_VISION, "out_hidden_size": 5120}, 33.4),
    KnownModel("Qwen/Qwen2.5-7B-Instruct", "qwen2", _text(3584, 18944, 28, 28, 4, 152064, False), {}, 7.62),
    KnownModel("Qwen/Qwen3-4B", "qwen3", _text(2560, 9728, 36, 32, 8, 151936, True, 128), {}, 4.02),
)}
# Names that share a published config with a table entry (base / instruct / thinking variants).
_ALIASES = {"Qwen/Qwen3-4B-Base": "Qwen/Qwen3-4B", "Qwen/Qwen3-4B-Instruct-2507": "Qwen/Qwen3-4B",
            "Qwen/Qwen2.5-7B": "Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen3-VL-2B-Thinking": "Qwen/Qwen3-VL-2B-Instruct",
            "Qwen/Qwen3-VL-4B-Thinking": "Qwen/Qwen3-VL-4B-Instruct",
            "Qwen/Qwen3-VL-8B-Thinking": "Qwen/Qwen3-VL-8B-Instruct"}


def _known_config(entry: KnownModel) -> Any:
    import transformers

    if entry.model_type == "qwen2":
        return transformers.Qwen2Config(**entry.text)
    if entry.model_type == "qwen3":
        return transformers.Qwen3Config(**entry.text)
    cls = {"qwen2_vl": transformers.Qwen2VLConfig, "qwen2_5_vl": transformers.Qwen2_5_VLConfig,
           "qwen3_vl": transformers.Qwen3VLConfig}[entry.model_type]
    return cls(text_config=dict(entry.text), vision_config=dict(entry.vision),
               tie_word_embeddings=entry.text["tie_word_embeddings"])


# ----------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class LinearShape:
    """One ``nn.Linear``: the last component of its module name, in/out features, vision tower or not."""

    name: str
    in_features: int
    out_features: int
    vision: bool


@dataclass(frozen=True)
class ModelSpec:
    """What sizes memory: parameter counts and dimensions of a model (see module docstring)."""

    name: str
    source: str  # where the numbers come from
    total_params: int
    vision_params: int  # vision tower incl. patch embedding and merger (0 for text LMs)
    layer_params: int  # largest decoder layer
    vision_block_params: int  # largest vision block (0 for text LMs)
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    vision_depth: int = 0
    vision_hidden: int = 0
    vision_intermediate: int = 0
    patch_size: int = 0
    merge_size: int = 0
    linears: tuple[LinearShape, ...] = ()
    published_params: float | None = None  # billions (table entries only)

    @property
    def is_vlm(self) -> bool:
        return self.vision_params > 0

    @property
    def root_params(self) -> int:
        """Parameters outside every decoder layer and vision block (embeddings, lm_head, norms, merger)."""
        return (self.total_params - self.layers * self.layer_params
                - self.vision_depth * self.vision_block_params)

    def lora_params(self, r: int, target_modules: list[str], include_vision: bool) -> int:
        """Adapter parameters ``r * (in + out)`` over the Linear layers LoRA targets (see models.loading)."""
        targets = set(target_modules)
        return sum(r * (lin.in_features + lin.out_features) for lin in self.linears
                   if lin.name in targets and (include_vision or not lin.vision))


_BLOCK_RE = re.compile(r"(^|\.)(layers|blocks)\.(\d+)\.")


def spec_from_config(config: Any, name: str, source: str, published: float | None = None) -> ModelSpec:
    """Build ``config``'s model on the meta device and measure it."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    from mhpo_vl.models.loading import is_vision_param

    is_vlm = hasattr(config, "vision_config")
    auto = AutoModelForImageTextToText if is_vlm else AutoModelForCausalLM
    with torch.device("meta"):
        model = auto.from_config(config)
    blocks: dict[tuple[bool, str], int] = {}
    total = vision = 0
    for pname, param in model.named_parameters():
        n = param.numel()
        total += n
        is_vis = is_vision_param(pname)
        vision += n if is_vis else 0
        match = _BLOCK_RE.search(pname)
        if match:
            key = (is_vis, match.group(0))
            blocks[key] = blocks.get(key, 0) + n
    linears = tuple(LinearShape(mname.rsplit(".", 1)[-1], mod.in_features, mod.out_features, is_vision_param(mname))
                    for mname, mod in model.named_modules() if isinstance(mod, torch.nn.Linear))
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    vis_cfg = getattr(config, "vision_config", None)
    vision_blocks = [n for (is_vis, _), n in blocks.items() if is_vis]
    text_blocks = [n for (is_vis, _), n in blocks.items() if not is_vis]
    return ModelSpec(
        name=name, source=source, total_params=total, vision_params=vision,
        layer_params=max(text_blocks, default=0), vision_block_params=max(vision_blocks, default=0),
        layers=text.num_hidden_layers, hidden=text.hidden_size, intermediate=text.intermediate_size, heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=getattr(text, "head_dim", None) or text.hidden_size // heads, vocab=text.vocab_size,
        vision_depth=len(vision_blocks),
        vision_hidden=(getattr(vis_cfg, "embed_dim", None) or getattr(vis_cfg, "hidden_size", 0)) if vis_cfg else 0,
        vision_intermediate=_vision_intermediate(vis_cfg),
        patch_size=getattr(vis_cfg, "patch_size", 0) if vis_cfg else 0,
        merge_size=getattr(vis_cfg, "spatial_merge_size", 0) if vis_cfg else 0,
        linears=linears, published_params=published,
    )


def _vision_intermediate(vis_cfg: Any) -> int:
    if vis_cfg is None:
        return 0
    if getattr(vis_cfg, "mlp_ratio", None) and getattr(vis_cfg, "embed_dim", None):  # Qwen2-VL
        return int(vis_cfg.embed_dim * vis_cfg.mlp_ratio)
    return int(getattr(vis_cfg, "intermediate_size", 0))


def known_model(name: str) -> KnownModel | None:
    """The table entry for a hub id (case-insensitive; base/thinking variants map to their twin)."""
    lowered = {k.lower(): k for k in (*KNOWN_MODELS, *_ALIASES)}
    key = lowered.get(name.strip().rstrip("/").lower())
    if key is None:
        return None
    return KNOWN_MODELS[_ALIASES.get(key, key)]


@lru_cache(maxsize=16)
def model_spec(name_or_path: str, trust_remote_code: bool = False) -> ModelSpec:
    """The :class:`ModelSpec` of a local model directory (its config.json) or a table entry (offline)."""
    path = Path(name_or_path)
    if (path / "config.json").is_file():
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            raise UserError(f"model.name_or_path: cannot read {path / 'config.json'}: {exc}") from None
        return spec_from_config(config, name_or_path, f"{path / 'config.json'} (built on the meta device)")
    entry = known_model(name_or_path)
    if entry is None:
        known = ", ".join(sorted(KNOWN_MODELS))
        raise UserError(f"model.name_or_path: {name_or_path!r} is not a local model directory and not in the "
                        f"built-in size table ({known}); point it at a directory holding config.json")
    return spec_from_config(_known_config(entry), entry.repo,
                            f"built-in table: config.json of {entry.repo} on the Hugging Face hub",
                            entry.published_params)
