"""Grouped generation with a colocated vLLM engine (``rollout.backend: vllm``).

The engine runs inside the training process (one per rank; ``VLLM_ENABLE_V1_MULTIPROCESSING=0``; under
several processes each rank's engine on its own device, see :mod:`mhpo_vl.rollout.vllm_engine`) and
returns the same :class:`Rollout` as the HF backend: the prompt token ids are the collator's (each
run of image placeholders is collapsed to one, which vLLM expands again with the same pixel limits,
and the expansion is checked), vision special tokens are suppressed, stop strings and EOS end a
response the same way, and the per-token log-probs are vLLM's "processed" log-probs (after the
temperature, the suppression and top-k / top-p).

The trainer pushes its weights after every optimizer step (:meth:`VLLMRolloutBackend.sync_weights`),
streamed one tensor at a time and cast to the engine's dtype. With sleep mode (GPU) the engine frees its
memory while the trainer trains, in this order (as TRL and EasyR1): empty the caching allocator, wake
the weights, load the new weights, empty the allocator, wake the KV cache, generate, sleep, empty the
allocator.

    backend = VLLMRolloutBackend(model_path, processor, VLLMConfig(), max_model_len=1024, seed=0)
    rollout = backend.generate(model, collator(records), SamplingParams(num_samples=8, return_logprobs=True))
    backend.sync_weights(iter_full_weights(model))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from types import SimpleNamespace
from typing import Any

import torch

from mhpo_vl.config import VLLMConfig
from mhpo_vl.data.images import load_image
from mhpo_vl.errors import UserError
from mhpo_vl.models.processor import get_tokenizer, is_multimodal
from mhpo_vl.rollout.hf import eos_token_ids, response_mask_from_ids, vision_token_ids
from mhpo_vl.rollout.types import Rollout, SamplingParams
from mhpo_vl.rollout.vllm_engine import (
    check_process_group,
    engine_kwargs,
    executor_kwargs,
    generation_config,
    prepare_environment,
    quiet_expected_warnings,
)

log = logging.getLogger(__name__)

IMAGE_PAD = "<|image_pad|>"
# vLLM clamps logit biases to +-100: far enough below any real logit to never be sampled.
_SUPPRESS_BIAS = -100.0
SLEEP_TAGS = ("weights", "kv_cache")  # what a level-1 sleep offloads (weights) or frees (KV cache)


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


class WeightStream:
    """An iterator over ``(name, tensor)`` pairs cast to the engine's dtype, one pair at a time.

    Nothing is kept here: a tensor is freed once the engine has loaded it (vLLM buffers a fused layer's
    parts, q/k/v or gate/up, until the layer is complete, and the row-padded embedding until the end), so
    a sync holds a few full tensors beyond the model, never a second model (a list would: ~28 GiB for a
    7B model in float32 under FSDP2). ``sent`` counts the pairs handed out; :meth:`drain` consumes what the
    engine left unread (under FSDP2 each pair is a collective that every rank must reach).
    """

    def __init__(self, weights: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype) -> None:
        self._source = iter(weights)
        self.dtype = dtype
        self.sent = 0

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[str, torch.Tensor]:
        name, tensor = next(self._source)
        self.sent += 1
        tensor = tensor.detach()
        if tensor.is_floating_point() and tensor.dtype != self.dtype:
            tensor = tensor.to(self.dtype)
        return name, tensor

    def drain(self) -> int:
        """Consume the pairs nobody read; returns how many there were."""
        return sum(1 for _ in self._source)


class VLLMRolloutBackend:
    """RolloutBackend on a vLLM ``LLM`` engine built from ``model_path`` (weights then follow the trainer).

    ``sleep_mode``: free the engine's memory between rollouts (default: ``options.enable_sleep_mode`` on a
    GPU). ``empty_cache`` releases PyTorch's caching allocator around each wake and sleep (default
    ``torch.cuda.empty_cache``, which does nothing without CUDA). Both can be given to exercise the
    sleep path of a CPU engine, whose own sleep and wake keep the memory in place.
    """

    needs_weight_sync = True

    def __init__(self, model_path: str, processor: Any, options: VLLMConfig | None = None, *,
                 max_model_len: int, seed: int = 0, dtype: str = "auto", min_pixels: int | None = None,
                 max_pixels: int | None = None, trust_remote_code: bool = False, sleep_mode: bool | None = None,
                 empty_cache: Callable[[], None] | None = None) -> None:
        options = options or VLLMConfig()
        prepare_environment(options.cpu_kvcache_space_gb)
        try:
            from vllm import LLM
        except ImportError as exc:
            raise UserError(f"rollout.backend=vllm needs vLLM ({exc}); install it with `make setup-vllm` and "
                            "run from .venv-vllm") from None
        check_process_group(executor_kwargs())
        self.processor = processor
        self.tokenizer = get_tokenizer(processor)
        self.multimodal = is_multimodal(processor)
        self.on_gpu = torch.cuda.is_available()
        self.sleep_enabled = bool(options.enable_sleep_mode and self.on_gpu) if sleep_mode is None else sleep_mode
        self.empty_cache: Callable[[], None] = empty_cache or torch.cuda.empty_cache
        self.sleeping: set[str] = set()  # SLEEP_TAGS asleep now
        vocab = self.tokenizer.get_vocab()
        self.image_pad_id = vocab.get(IMAGE_PAD) if self.multimodal else None
        self.suppress = {i: _SUPPRESS_BIAS for i in vision_token_ids(self.tokenizer)}
        self.eos_ids = eos_token_ids(SimpleNamespace(generation_config=generation_config(model_path)), self.tokenizer)
        self.llm = LLM(**engine_kwargs(
            model_path, options, max_model_len=max_model_len, seed=seed, dtype=dtype, multimodal=self.multimodal,
            on_gpu=self.on_gpu, sleep=self.sleep_enabled, min_pixels=min_pixels, max_pixels=max_pixels,
            trust_remote_code=trust_remote_code))
        quiet_expected_warnings()
        self.max_images = options.max_images_per_prompt
        self.engine_dtype: torch.dtype = self.llm.llm_engine.vllm_config.model_config.dtype

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
        tok = self.tokenizer
        eos_ids = self.eos_ids
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else eos_ids[0]
        prompts, full_ids = self._prompts(batch)
        # Per-request seeds drawn from torch's generator: reproducible, and restored with it on resume.
        seed = int(torch.randint(0, 2**30, (1,)).item())
        self.wake("weights")  # already awake after a sync; not when two rollouts follow each other
        self.wake("kv_cache")
        outputs = self.llm.generate(prompts, self._sampling_params(params, eos_ids, seed), use_tqdm=False)
        self.sleep()
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
        return Rollout(prompt_inputs=batch.inputs, response_ids=response_ids, response_mask=mask,
                       texts=tok.batch_decode(response_ids, skip_special_tokens=True), group_size=g,
                       truncated=truncated, logprobs=logprobs, records=list(batch.records))

    # ------------------------------------------------------------------ weights and memory
    def sync_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> int:
        """Load HF-named full tensors into the engine in place and drop every cache built from old weights.

        ``weights`` may be any subset of the model's tensors (e.g. only the trainable ones), is read once,
        one tensor at a time (:class:`WeightStream`: never a list of full tensors), and each tensor is cast
        to the engine's dtype before it is sent. Returns the number of tensors loaded.
        """
        self.wake("weights")
        stream = WeightStream(weights, self.engine_dtype)
        # In-process, the iterator reaches the worker by reference; vLLM's reload_weights reads it once.
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": stream})
        unread = stream.drain()
        if unread:
            raise RuntimeError(f"the vLLM engine stopped reading weights after {stream.sent} of "
                               f"{stream.sent + unread} tensors; its weights are now partly updated")
        self.llm.collective_rpc(retie_word_embeddings)
        self.llm.reset_prefix_cache()
        if self.multimodal:
            self.llm.reset_mm_cache()
            self.llm.llm_engine.reset_encoder_cache()
        return stream.sent

    def wake(self, tag: str) -> None:
        """Sleep mode: give PyTorch's cached blocks back, then restore ``tag`` ("weights" or "kv_cache")."""
        if tag in self.sleeping:
            self.empty_cache()
            self.llm.wake_up(tags=[tag])
            self.sleeping.discard(tag)

    def sleep(self) -> None:
        """Sleep mode: offload the weights and free the KV cache (level 1), then empty the caching allocator.

        Level 1 keeps the weights (in host memory): a sync may send only the trainable tensors.
        """
        if self.sleep_enabled and not self.sleeping:
            self.llm.sleep(level=1)
            self.sleeping.update(SLEEP_TAGS)
            self.empty_cache()

    def close(self) -> None:
        """Shut the engine down now: its worker, caches and vLLM's process groups (under external_launcher
        also the default group it joined). Left to interpreter exit, vLLM's finalizer would tear down
        groups the trainer had already destroyed ("Invalid process group specified"). Idempotent."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()


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


def _sampled_logprob(step: Any, token: int) -> float:
    """The sampled token's log-prob from one step of vLLM's logprobs (a {token_id: Logprob} mapping)."""
    entry = step.get(token) if step is not None else None
    return float(entry.logprob) if entry is not None else 0.0
