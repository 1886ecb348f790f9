"""Grouped generation with a colocated vLLM engine (``rollout.backend: vllm``).

The engine runs inside the training process (one per rank; ``VLLM_ENABLE_V1_MULTIPROCESSING=0``) and
returns the same :class:`Rollout` as the HF backend: the prompt token ids are the collator's (each
run of image placeholders is collapsed to one, which vLLM expands again with the same pixel limits,
and the expansion is checked), vision special tokens are suppressed, stop strings and EOS end a
response the same way, and the per-token log-probs are vLLM's "processed" log-probs (after the
temperature, the suppression and top-k / top-p). The trainer pushes its weights after every optimizer
step (:meth:`VLLMRolloutBackend.sync_weights`); on a GPU the engine sleeps while the trainer trains.

    backend = VLLMRolloutBackend(model_path, processor, VLLMConfig(), max_model_len=1024, seed=0)
    rollout = backend.generate(model, collator(records), SamplingParams(num_samples=8, return_logprobs=True))
    backend.sync_weights(iter_full_weights(model))
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from types import SimpleNamespace
from typing import Any

import torch

from mhpo_vl.config import VLLMConfig
from mhpo_vl.data.images import load_image
from mhpo_vl.errors import UserError
from mhpo_vl.models.processor import get_tokenizer, is_multimodal
from mhpo_vl.rollout.hf import eos_token_ids, response_mask_from_ids, vision_token_ids
from mhpo_vl.rollout.types import Rollout, SamplingParams

log = logging.getLogger(__name__)

IMAGE_PAD = "<|image_pad|>"
# vLLM clamps logit biases to +-100: far enough below any real logit to never be sampled.
_SUPPRESS_BIAS = -100.0
CPU_TOKENS_PER_STEP = 4096  # vLLM's own CPU default for max_num_batched_tokens (raised to max_model_len)


def prepare_environment(cpu_kvcache_space_gb: float) -> None:
    """Environment vLLM reads at import/engine start: in-process engine, torch threads, CPU KV cache.

    In-process (no engine subprocess) so weight tensors reach the engine by reference; OMP_NUM_THREADS
    set, because without it vLLM's CPU backend pins torch to one thread and slows the colocated trainer.
    """
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{cpu_kvcache_space_gb:g}")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


def quiet_expected_warnings() -> None:
    """After vLLM configured its logging: partial reloads (only trainable tensors) warn once per untouched
    layer, and the CPU worker warns at every ``torch.set_num_threads`` call; both are expected here."""
    for name in ("vllm.model_executor.model_loader.reload", "vllm.v1.worker.cpu_worker"):
        logging.getLogger(name).setLevel(logging.ERROR)


def collapse_image_runs(ids: list[int], image_pad_id: int | None) -> list[int]:
    """Token ids with each run of image placeholders reduced to one (vLLM expands it per image).

    >>> collapse_image_runs([1, 9, 9, 9, 2, 9, 9, 3], 9)
    [1, 9, 2, 9, 3]
    """
    if image_pad_id is None:
        return list(ids)
    out: list[int] = []
    for token in ids:
        if token == image_pad_id and out and out[-1] == image_pad_id:
            continue
        out.append(token)
    return out


class VLLMRolloutBackend:
    """RolloutBackend on a vLLM ``LLM`` engine built from ``model_path`` (weights then follow the trainer)."""

    needs_weight_sync = True

    def __init__(self, model_path: str, processor: Any, options: VLLMConfig | None = None, *,
                 max_model_len: int, seed: int = 0, dtype: str = "auto", min_pixels: int | None = None,
                 max_pixels: int | None = None, trust_remote_code: bool = False) -> None:
        options = options or VLLMConfig()
        prepare_environment(options.cpu_kvcache_space_gb)
        try:
            from vllm import LLM
        except ImportError as exc:
            raise UserError(f"rollout.backend=vllm needs vLLM ({exc}); install it with `make setup-vllm` and "
                            "run from .venv-vllm") from None
        self.processor = processor
        self.tokenizer = get_tokenizer(processor)
        self.multimodal = is_multimodal(processor)
        self.on_gpu = torch.cuda.is_available()
        self.sleep_enabled = bool(options.enable_sleep_mode and self.on_gpu)
        self.asleep = False
        vocab = self.tokenizer.get_vocab()
        self.image_pad_id = vocab.get(IMAGE_PAD) if self.multimodal else None
        self.suppress = {i: _SUPPRESS_BIAS for i in vision_token_ids(self.tokenizer)}
        self.eos_ids = eos_token_ids(SimpleNamespace(generation_config=_generation_config(model_path)), self.tokenizer)
        positions, config_dtype = _model_facts(model_path, trust_remote_code)
        if dtype == "auto" and config_dtype:
            dtype = config_dtype  # as transformers' "auto" (the trainer's): vLLM's own would cast float32 down
        if positions and max_model_len > positions:
            log.info("vLLM max_model_len %d capped at the model's %d positions", max_model_len, positions)
            max_model_len = positions
        kwargs: dict[str, Any] = {
            "model": model_path, "dtype": dtype, "seed": seed, "max_model_len": max_model_len,
            "max_num_seqs": options.max_num_seqs, "trust_remote_code": trust_remote_code,
            "enforce_eager": options.enforce_eager if self.on_gpu else not options.cpu_compile,
            # Sampled tokens' log-probs after temperature, masks and top-k/top-p (what was sampled from).
            "logprobs_mode": "processed_logprobs",
            # The checkpoint's generation_config (e.g. repetition_penalty) stays out of RL, as in hf.py.
            "generation_config": "vllm",
        }
        if not self.on_gpu:
            # A prompt split over engine steps (chunked prefill) rewinds its seeded generator, which only a
            # CUDA generator can ("CPU Generator does not use offset"): on CPU each step takes whole prompts.
            kwargs.update(enable_chunked_prefill=False,
                          max_num_batched_tokens=max(CPU_TOKENS_PER_STEP, max_model_len))
        if self.on_gpu:
            kwargs.update(gpu_memory_utilization=options.gpu_memory_utilization,
                          tensor_parallel_size=options.tensor_parallel_size,
                          enable_sleep_mode=self.sleep_enabled)
        if self.multimodal:
            size = {k: v for k, v in (("shortest_edge", min_pixels), ("longest_edge", max_pixels)) if v}
            kwargs["limit_mm_per_prompt"] = {"image": options.max_images_per_prompt, "video": 0}
            if size:
                kwargs["mm_processor_kwargs"] = {"size": size}
        self.llm = LLM(**kwargs)
        quiet_expected_warnings()
        self.max_images = options.max_images_per_prompt

    # ------------------------------------------------------------------ generation
    def _prompts(self, batch: Any) -> tuple[list[dict[str, Any]], list[list[int]]]:
        """vLLM prompts (collapsed token ids + PIL images) and each row's unpadded collator ids."""
        ids = batch.inputs["input_ids"]
        mask = batch.inputs["attention_mask"].bool()
        prompts, full_ids = [], []
        for row, record in enumerate(batch.records):
            row_ids = ids[row][mask[row]].tolist()
            prompt: dict[str, Any] = {"prompt_token_ids": collapse_image_runs(row_ids, self.image_pad_id)}
            entries = record.get("images") or []
            if entries:
                if len(entries) > self.max_images:
                    raise UserError(f"record {record.get('id')}: {len(entries)} images, over "
                                    f"rollout.vllm.max_images_per_prompt={self.max_images}")
                prompt["multi_modal_data"] = {
                    "image": [load_image(e, record.get("image_root"), str(record.get("id"))) for e in entries]}
            prompts.append(prompt)
            full_ids.append(row_ids)
        return prompts, full_ids

    def _sampling_params(self, params: SamplingParams, eos_ids: list[int], seed: int) -> Any:
        from vllm import SamplingParams as VSamplingParams

        greedy = params.temperature <= 0
        return VSamplingParams(
            n=params.num_samples, temperature=0.0 if greedy else params.temperature,
            top_p=1.0 if greedy else params.top_p, top_k=0 if greedy else params.top_k,
            max_tokens=params.max_new_tokens, stop=list(params.stop_strings) or None, stop_token_ids=eos_ids,
            logprobs=0 if params.return_logprobs else None, logit_bias=dict(self.suppress) or None,
            seed=seed, skip_special_tokens=True, detokenize=bool(params.stop_strings),
        )

    def generate(self, model: torch.nn.Module | None, batch: Any, params: SamplingParams) -> Rollout:
        """Sample ``params.num_samples`` responses per prompt of ``batch``; ``model`` is not used."""
        self.wake_up()
        tok = self.tokenizer
        eos_ids = self.eos_ids
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else eos_ids[0]
        prompts, full_ids = self._prompts(batch)
        # Per-request seeds drawn from torch's generator: reproducible, and restored with it on resume.
        seed = int(torch.randint(0, 2**30, (1,)).item())
        outputs = self.llm.generate(prompts, self._sampling_params(params, eos_ids, seed), use_tqdm=False)
        g = params.num_samples
        tokens: list[list[int]] = []
        logps: list[list[float]] = []
        stopped: list[bool] = []
        for out, expected in zip(outputs, full_ids):
            if list(out.prompt_token_ids) != expected:
                raise RuntimeError("vLLM expanded the prompt differently from the collator "
                                   f"({len(out.prompt_token_ids)} vs {len(expected)} tokens): check that "
                                   "model.min_pixels/max_pixels reach both")
            for sample in sorted(out.outputs, key=lambda c: c.index):
                tokens.append(list(sample.token_ids))
                stopped.append(isinstance(sample.stop_reason, str))
                if params.return_logprobs:
                    logps.append([_sampled_logprob(step, t) for step, t in zip(sample.logprobs, sample.token_ids)])
        width = max((len(t) for t in tokens), default=0)
        response_ids = torch.full((len(tokens), width), pad_id, dtype=torch.long)
        for i, t in enumerate(tokens):
            response_ids[i, : len(t)] = torch.tensor(t, dtype=torch.long)
        mask, truncated = response_mask_from_ids(response_ids, eos_ids, pad_id, torch.tensor(stopped))
        response_ids = torch.where(mask.bool(), response_ids, torch.full_like(response_ids, pad_id))
        logprobs = None
        if params.return_logprobs:
            logprobs = torch.zeros(len(tokens), width, dtype=torch.float32)
            for i, row in enumerate(logps):
                logprobs[i, : len(row)] = torch.tensor(row, dtype=torch.float32)
            logprobs = torch.where(mask.bool(), logprobs, torch.zeros_like(logprobs))
        self.sleep()
        return Rollout(prompt_inputs=batch.inputs, response_ids=response_ids, response_mask=mask,
                       texts=tok.batch_decode(response_ids, skip_special_tokens=True), group_size=g,
                       truncated=truncated, logprobs=logprobs, records=list(batch.records))

    # ------------------------------------------------------------------ weights and memory
    def sync_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> int:
        """Load HF-named full tensors into the engine in place and drop every cache built from old weights.

        ``weights`` may be any subset of the model's tensors (e.g. only the trainable ones). Returns
        the number of tensors loaded.
        """
        self.wake_up()
        count = 0

        def counted() -> Iterator[tuple[str, torch.Tensor]]:
            nonlocal count
            for name, tensor in weights:
                count += 1
                yield name, tensor.detach()

        # In-process, the list reaches the worker by reference (no copy through a socket).
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": list(counted())})
        self.llm.collective_rpc(retie_word_embeddings)
        self.llm.reset_prefix_cache()
        if self.multimodal:
            self.llm.reset_mm_cache()
            self.llm.llm_engine.reset_encoder_cache()
        return count

    def sleep(self) -> None:
        """GPU with sleep mode: offload the weights and free the KV cache until the next wake_up."""
        if self.sleep_enabled and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def wake_up(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False


def retie_word_embeddings(worker: Any) -> int:
    """Worker-side: point tied LM heads at the reloaded input embeddings again (returns how many).

    vLLM ties ``lm_head.weight`` to ``embed_tokens.weight`` once, at load. An in-place reload gives the
    embedding new tensors while the head, which no checkpoint tensor names, keeps its old ones (and, on
    CPU, its old packed GEMM weight): the logits would use stale embeddings. Re-tie and re-process.
    """
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding

    runner = worker.model_runner
    model = runner.get_model() if hasattr(runner, "get_model") else runner.model
    fixed = 0
    for module in model.modules():
        head = getattr(module, "lm_head", None)
        embed = getattr(getattr(module, "model", None), "embed_tokens", None)
        tied = getattr(getattr(module, "config", None), "tie_word_embeddings", False)
        if tied and isinstance(head, ParallelLMHead) and isinstance(embed, VocabParallelEmbedding):
            head.weight = embed.weight
            process = getattr(head.quant_method, "process_weights_after_loading", None)
            if process is not None:
                process(head)
            fixed += 1
    return fixed


def _model_facts(model_path: str, trust_remote_code: bool) -> tuple[int | None, str | None]:
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


def _generation_config(model_path: str) -> Any:
    """The checkpoint's generation config (for its EOS ids, as the HF backend reads them), or None."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(model_path)
    except OSError:
        return None


def _sampled_logprob(step: Any, token: int) -> float:
    """The sampled token's log-prob from one step of vLLM's logprobs (a {token_id: Logprob} mapping)."""
    entry = step.get(token) if step is not None else None
    return float(entry.logprob) if entry is not None else 0.0
