"""Checks that run before any data or model is loaded, so a typo fails in a second with one clear line."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from mhpo_vl.errors import UserError
from mhpo_vl.hub import hub_offline, looks_like_hub_id, probe_hub


def _cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers always brings huggingface_hub
        return True
    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def check_model_paths(model: str, lora: Optional[str] = None) -> None:
    """``--model``: an existing model folder (with ``config.json``) or a hub id (in the HF cache, or on a
    hub that answers one probe); ``--lora``: a folder with ``adapter_config.json``. Else a ``UserError``."""
    path = Path(model).expanduser()
    if looks_like_hub_id(model):
        if hub_offline():
            if not _cached(model):
                raise UserError(f"--model: {model!r} is not a local folder and not in the HF cache "
                                "(HF_HUB_OFFLINE is set)")
        elif not _cached(model):
            reason = probe_hub(model, repo_type="model")
            if reason is not None:
                raise UserError(f"--model: {model!r} is not a local folder or in the HF cache, and {reason}; "
                                "pass a local model folder")
    elif not path.exists():
        raise UserError(f"--model: model path not found: {model}")
    elif path.is_dir() and not (path / "config.json").is_file():
        raise UserError(f"--model: {model} has no config.json (expected a transformers model folder, "
                        "e.g. a checkpoint's step_N/)")
    if lora is not None:
        lora_path = Path(lora).expanduser()
        if not lora_path.is_dir():
            raise UserError(f"--lora: adapter folder not found: {lora}")
        if not (lora_path / "adapter_config.json").is_file():
            raise UserError(f"--lora: no adapter_config.json in {lora}")


def check_vllm_model(model: str) -> None:
    """``--backend vllm``: a training checkpoint of the old layout (trainer state beside the model) would feed
    its RNG tensors to vLLM as weights; say so in one line instead of vLLM's "no parameter named 'torch_cpu'"."""
    from mhpo_vl.trainer.checkpoint import legacy_weight_strays

    stray = legacy_weight_strays(Path(model).expanduser())
    if stray:
        raise UserError(f"--model: {model} is a checkpoint of the old layout, whose {stray[0]} vLLM would load as "
                        "weights; evaluate it with --backend hf, or move its rng_state*, optimizer.pt and scheduler.pt "
                        "into trainer_state/ and its trainer_state.json to trainer_state/state.json")
