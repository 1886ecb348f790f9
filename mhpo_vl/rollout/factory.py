"""Pick the rollout backend a config asks for (``rollout.backend: hf | vllm``)."""

from __future__ import annotations

from typing import Any

from mhpo_vl.config import Config
from mhpo_vl.rollout.hf import HFRolloutBackend


def make_rollout_backend(cfg: Config, processor: Any, *, seed: int = 0) -> Any:
    """The HF ``generate`` backend, or a colocated vLLM engine loaded from ``cfg.model.name_or_path``.

    The vLLM engine's context holds the longest prompt plus the response budget unless
    ``rollout.vllm.max_model_len`` says otherwise.
    """
    if cfg.rollout.backend == "hf":
        return HFRolloutBackend(processor, decoder=cfg.rollout.hf_decoder)
    from mhpo_vl.rollout.vllm import VLLMRolloutBackend

    options = cfg.rollout.vllm
    max_len = options.max_model_len or cfg.data.max_prompt_tokens + cfg.rollout.max_new_tokens
    return VLLMRolloutBackend(cfg.model.name_or_path, processor, options, max_model_len=max_len, seed=seed,
                              dtype=engine_dtype(cfg), min_pixels=cfg.model.min_pixels,
                              max_pixels=cfg.model.max_pixels, trust_remote_code=cfg.model.trust_remote_code)


def engine_dtype(cfg: Config) -> str:
    """The vLLM engine's weight dtype: ``rollout.vllm.dtype``, or the trainer's ``model.dtype`` when auto."""
    return cfg.model.dtype if cfg.rollout.vllm.dtype == "auto" else cfg.rollout.vllm.dtype
