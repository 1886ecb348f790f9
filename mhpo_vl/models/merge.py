"""`mhpo-vl merge-lora`: fold a LoRA training checkpoint into its base model, saved as a plain HF folder.

A LoRA checkpoint (``checkpoints/step_N/``, see :mod:`mhpo_vl.trainer.checkpoint`) holds the peft adapter
(``adapter_config.json`` + ``adapter_model.safetensors``) and, when the vision tower trained too,
``extra_trainable.safetensors``. :func:`merge_lora` loads the base model in float32, applies both,
merges with peft's ``merge_and_unload`` and writes ``save_pretrained`` safetensors plus the base's
processor and tokenizer files, so the folder loads with ``from_pretrained``, ``mhpo-eval run --model``
and vLLM like any released model.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch

from mhpo_vl.errors import UserError

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
# Processor / tokenizer files of Qwen and most HF models (weights and model config are written anew).
PROCESSOR_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
    "merges.txt", "tokenizer.model", "chat_template.json", "chat_template.jinja", "processor_config.json",
    "preprocessor_config.json", "video_preprocessor_config.json",
)
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_checkpoint(path: str | Path) -> Path:
    """The LoRA checkpoint directory: ``path`` itself, or a run directory's latest checkpoint."""
    from mhpo_vl.trainer.checkpoint import latest_checkpoint

    path = Path(path)
    if not path.is_dir():
        raise UserError(f"checkpoint not found: {path}")
    if (path / ADAPTER_CONFIG).is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is not None and (latest / ADAPTER_CONFIG).is_file():
        return latest
    if latest is not None or (path / "config.json").is_file():
        where = latest or path
        raise UserError(f"{where}: a full-model checkpoint (no {ADAPTER_CONFIG}); it loads with from_pretrained "
                        "as it is, there is nothing to merge")
    raise UserError(f"{path}: no {ADAPTER_CONFIG} and no checkpoints/step_N inside; expected a LoRA checkpoint "
                    "(trainer.output_dir/checkpoints/step_N) or a run directory")


def _base_from_adapter(checkpoint: Path) -> str:
    try:
        config = json.loads((checkpoint / ADAPTER_CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{checkpoint / ADAPTER_CONFIG}: unreadable ({exc})") from None
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not base:
        raise UserError(f"{checkpoint / ADAPTER_CONFIG} names no base model; pass --base")
    return str(base)


def _processor_dir(base: str) -> Path:
    """A local directory holding the base model's processor/tokenizer files (hub ids: the HF cache)."""
    if Path(base).is_dir():
        return Path(base)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(base, allow_patterns=list(PROCESSOR_FILES)))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, ...
        raise UserError(f"cannot fetch the processor files of base model {base!r} ({exc}); pass --base DIR") from None


def _saved_dtype(base: str) -> torch.dtype:
    """The dtype the base model's config records (float32 when it records none)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base)  # already fetched (or local) when the model loaded
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for candidate in (config, text):
        value = getattr(candidate, "dtype", None) or getattr(candidate, "torch_dtype", None)
        if isinstance(value, torch.dtype):
            return value
        if isinstance(value, str) and value in _DTYPES:
            return _DTYPES[value]
    return torch.float32


def merge_lora(checkpoint: str | Path, out: str | Path, *, base: str | None = None, dtype: str = "auto",
               overwrite: bool = False) -> Path:
    """Merge the LoRA checkpoint ``checkpoint`` into ``base`` (default: the adapter's recorded base) -> ``out``."""
    from peft import PeftModel
    from safetensors.torch import load_file

    from mhpo_vl.config import ModelConfig
    from mhpo_vl.models.loading import load_policy
    from mhpo_vl.trainer.checkpoint import EXTRA_TRAINABLE

    if dtype != "auto" and dtype not in _DTYPES:
        raise UserError(f"--dtype: {dtype!r} is not one of auto, {', '.join(_DTYPES)}")
    ckpt = resolve_checkpoint(checkpoint)
    out = Path(out)
    if out.resolve() == ckpt.resolve():
        raise UserError("--out must differ from the checkpoint directory")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise UserError(f"--out {out} exists and is not empty; pass --overwrite to replace it")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    base = base or _base_from_adapter(ckpt)
    log.info("merging %s into %s", ckpt, base)
    model = load_policy(ModelConfig(name_or_path=base, dtype="float32"))
    try:
        model = PeftModel.from_pretrained(model, str(ckpt))
    except (ValueError, RuntimeError, KeyError) as exc:
        raise UserError(f"{ckpt}: the adapter does not fit base model {base!r} ({exc})") from None
    extra_path = ckpt / EXTRA_TRAINABLE
    if extra_path.is_file():  # trained non-adapter weights (an unfrozen vision tower), named as in the peft model
        extra = load_file(str(extra_path))
        _, unexpected = model.load_state_dict(extra, strict=False)
        if unexpected:
            raise UserError(f"{extra_path}: weights the model does not have (e.g. {unexpected[0]})")
    merged = model.merge_and_unload()
    # Processor/tokenizer files: the checkpoint's own copy when it has one, else the base model's.
    files_dir = ckpt if (ckpt / "tokenizer_config.json").is_file() else _processor_dir(base)
    target = _DTYPES[dtype] if dtype != "auto" else _saved_dtype(base)
    merged = merged.to(target)
    merged.config.use_cache = True
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out))
    copied = [name for name in PROCESSOR_FILES if (files_dir / name).is_file()]
    for name in copied:
        shutil.copy2(files_dir / name, out / name)
    if "tokenizer_config.json" not in copied:
        raise UserError(f"base model {base!r} has no tokenizer files in {files_dir}; pass --base DIR")
    return out
