"""Building the colocated vLLM engine: its environment, its executor (one engine per rank), its ``LLM`` kwargs.

Several processes (``accelerate launch``, ``torchrun``; ``WORLD_SIZE`` > 1): every rank builds its own
engine with ``distributed_executor_backend="external_launcher"``. vLLM then joins the process group the
trainer already started, gives each rank a tensor-parallel group of its own (TP=1), and its worker takes
the rank's ``LOCAL_RANK`` device (``cuda:LOCAL_RANK``). Without it vLLM's single-process executor takes
local rank 0: every rank's engine on GPU 0, and every trainer's current device switched to ``cuda:0``.
Each engine samples its own rank's prompts; no engine step waits for another rank.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch

from mhpo_vl.config import VLLMConfig
from mhpo_vl.errors import UserError

log = logging.getLogger(__name__)

CPU_TOKENS_PER_STEP = 4096  # vLLM's own CPU default for max_num_batched_tokens (raised to max_model_len)
EXTERNAL_LAUNCHER = "external_launcher"


def prepare_environment(cpu_kvcache_space_gb: float) -> None:
    """Environment vLLM reads at import/engine start: in-process engine, torch threads, CPU KV cache.

    In-process (no engine subprocess) so weight tensors reach the engine by reference (and
    ``external_launcher`` requires it); OMP_NUM_THREADS set, because without it vLLM's CPU backend pins
    torch to one thread and slows the colocated trainer.
    """
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(int(cpu_kvcache_space_gb)))  # vLLM reads whole GiB
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


def quiet_expected_warnings() -> None:
    """After vLLM configured its logging: partial reloads (only trainable tensors) warn once per untouched
    layer, and the CPU worker warns at every ``torch.set_num_threads`` and sleep call; all expected here."""
    for name in ("vllm.model_executor.model_loader.reload", "vllm.v1.worker.cpu_worker"):
        logging.getLogger(name).setLevel(logging.ERROR)


def executor_kwargs(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The engine's executor: ``{}`` (vLLM's single-process one) in one process, ``external_launcher`` in several.

    ``env`` defaults to ``os.environ``; several processes means ``WORLD_SIZE`` > 1. vLLM's external launcher
    reads ``RANK`` and ``LOCAL_RANK`` (the device index), which accelerate and torchrun set.
    """
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE") or 1)
    if world <= 1:
        return {}
    missing = [key for key in ("LOCAL_RANK", "RANK") if not env.get(key)]
    if missing:
        raise UserError(f"rollout.backend=vllm with WORLD_SIZE={world}: {' and '.join(missing)} not set; start "
                        "the processes with `accelerate launch` or `torchrun`, which set each process's RANK and "
                        "LOCAL_RANK (the device its engine uses)")
    return {"distributed_executor_backend": EXTERNAL_LAUNCHER}


def check_process_group(executor: Mapping[str, str]) -> None:
    """Under ``external_launcher`` the engine joins the trainer's process group, which must exist already
    (without one, vLLM would start a one-process world of its own on the launcher's rendezvous address)."""
    if executor.get("distributed_executor_backend") != EXTERNAL_LAUNCHER:
        return
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise UserError("rollout.backend=vllm under several processes: start torch.distributed (the trainer's "
                        "Accelerator does) before building the vLLM engine, so that each rank's engine joins it")


def engine_kwargs(model_path: str, options: VLLMConfig, *, max_model_len: int, seed: int, dtype: str,
                  multimodal: bool, on_gpu: bool, sleep: bool, min_pixels: int | None = None,
                  max_pixels: int | None = None, trust_remote_code: bool = False,
                  env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for one rank's engine (see the module docstring).

    ``dtype`` "auto" takes the checkpoint's dtype (as transformers' "auto", the trainer's: vLLM's own would
    cast float32 down); ``max_model_len`` is capped at the model's positions; ``sleep`` (GPU) lets the
    engine free its memory while the trainer trains.
    """
    positions, config_dtype = model_facts(model_path, trust_remote_code)
    if dtype == "auto" and config_dtype:
        dtype = config_dtype
    if positions and max_model_len > positions:
        log.info("vLLM max_model_len %d capped at the model's %d positions", max_model_len, positions)
        max_model_len = positions
    kwargs: dict[str, Any] = {
        "model": model_path, "dtype": dtype, "seed": seed, "max_model_len": max_model_len,
        "max_num_seqs": options.max_num_seqs, "trust_remote_code": trust_remote_code,
        "enforce_eager": options.enforce_eager if on_gpu else not options.cpu_compile,
        # Sampled tokens' log-probs after temperature, masks and top-k/top-p (what was sampled from).
        "logprobs_mode": "processed_logprobs",
        # The checkpoint's generation_config (e.g. repetition_penalty) stays out of RL, as in hf.py.
        "generation_config": "vllm",
        **executor_kwargs(env),
    }
    if on_gpu:
        kwargs.update(gpu_memory_utilization=options.gpu_memory_utilization, enable_sleep_mode=sleep)
    else:
        # A prompt split over engine steps (chunked prefill) rewinds its seeded generator, which only a
        # CUDA generator can ("CPU Generator does not use offset"): on CPU each step takes whole prompts.
        kwargs.update(enable_chunked_prefill=False, max_num_batched_tokens=max(CPU_TOKENS_PER_STEP, max_model_len))
    if multimodal:
        size = {k: v for k, v in (("shortest_edge", min_pixels), ("longest_edge", max_pixels)) if v}
        kwargs["limit_mm_per_prompt"] = {"image": options.max_images_per_prompt, "video": 0}
        if size:
            kwargs["mm_processor_kwargs"] = {"size": size}
    return kwargs


def model_facts(model_path: str, trust_remote_code: bool) -> tuple[int | None, str | None]:
    """(context length: max_position_embeddings of the text config, weights dtype name) from the config."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        return None, None
    text = getattr(config, "text_config", None) or config
    positions = getattr(text, "max_position_embeddings", None) or getattr(config, "max_position_embeddings", None)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    return (int(positions) if positions else None), (dtype if isinstance(dtype, str) else None)


def generation_config(model_path: str) -> Any:
    """The checkpoint's generation config (for its EOS ids, as the HF backend reads them), or None."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(model_path)
    except OSError:
        return None
