"""The fast HF decoder (one prefill per prompt, shared KV, in-place buffer) against generate and a full forward."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from mhpo_vl.config import ModelConfig
from mhpo_vl.data import PromptCollator
from mhpo_vl.models import load_policy, load_processor
from mhpo_vl.rollout import HFRolloutBackend, SamplingParams, build_sequence_inputs, token_logprobs
from mhpo_vl.rollout.decode import sample_tokens, supports_fast_decode
from mhpo_vl.rollout.hf import vision_token_ids


def _records():
    # Prompts of different lengths (left padding), with one, none and two images.
    return [
        {"id": "a", "prompt": "What colour is the big shape?", "answer": "red",
         "images": [Image.new("RGB", (56, 56), "red")]},
        {"id": "b", "prompt": "Text only", "answer": "3", "images": []},
        {"id": "c", "prompt": "Two images", "answer": "x",
         "images": [Image.new("RGB", (56, 56), "blue"), Image.new("RGB", (84, 56), "green")]},
    ]


def _setup(tiny_model_dir, arch, records):
    kwargs = {} if arch == "qwen2" else {"min_pixels": 28 * 28, "max_pixels": 112 * 112}
    cfg = ModelConfig(name_or_path=str(tiny_model_dir(arch)), **kwargs)
    processor, model = load_processor(cfg), load_policy(cfg)
    return processor, model, PromptCollator(processor, template="plain")(records)


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen2"])
def test_shared_prefill_samples_have_the_log_probs_of_a_fresh_forward(arch, tiny_model_dir):
    records = _records() if arch != "qwen2" else [_records()[0] | {"images": []}, _records()[1]]
    processor, model, batch = _setup(tiny_model_dir, arch, records)
    assert supports_fast_decode(model)
    params = SamplingParams(num_samples=3, temperature=0.8, top_k=50, max_new_tokens=12, return_logprobs=True)
    torch.manual_seed(0)
    rollout = HFRolloutBackend(processor, decoder="fast").generate(model, batch, params)
    n = len(records) * 3
    assert rollout.response_ids.shape[0] == n and rollout.logprobs.shape == rollout.response_ids.shape
    tok = processor.tokenizer if hasattr(processor, "tokenizer") else processor
    vision_start = tok.convert_tokens_to_ids("<|vision_start|>")
    inputs = build_sequence_inputs(rollout, model, vision_start)
    with torch.no_grad():
        fresh, _ = token_logprobs(model, inputs, rollout.response_ids, 0.8)
    m = rollout.response_mask.bool()
    assert m.sum() > n, "responses should be longer than one token"
    torch.testing.assert_close(rollout.logprobs[m], fresh[m], atol=1e-4, rtol=0)
    assert (rollout.logprobs[~m] == 0).all()
    assert not set(vision_token_ids(tok)) & set(rollout.response_ids[m].tolist())
    # The G samples of a prompt differ (independent draws from one shared prefill).
    assert len({tuple(r) for r in rollout.response_ids[:3].tolist()}) > 1


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2"])
def test_greedy_tokens_equal_generate(arch, tiny_model_dir):
    records = _records() if arch != "qwen2" else [_records()[0] | {"images": []}, _records()[1]]
    processor, model, batch = _setup(tiny_model_dir, arch, records)
    params = SamplingParams(num_samples=1, temperature=0.0, max_new_tokens=10, return_logprobs=True)
    fast = HFRolloutBackend(processor, decoder="fast").generate(model, batch, params)
    slow = HFRolloutBackend(processor, decoder="generate").generate(model, batch, params)
    assert torch.equal(fast.response_ids, slow.response_ids) and fast.texts == slow.texts
    assert torch.equal(fast.response_mask, slow.response_mask) and torch.equal(fast.truncated, slow.truncated)
    torch.testing.assert_close(fast.logprobs, slow.logprobs, atol=1e-4, rtol=0)


def test_sample_tokens_follows_the_distribution_and_skips_masked_tokens():
    torch.manual_seed(0)
    probs = torch.tensor([0.5, 0.0, 0.3, 0.2])
    logits = probs.log().expand(20000, 4).contiguous()
    drawn = sample_tokens(logits)
    freq = torch.bincount(drawn, minlength=4).float() / len(drawn)
    assert freq[1] == 0
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)


@pytest.mark.parametrize("decoder", ["fast", "generate"])
def test_top_k_zero_samples_the_whole_vocabulary(decoder, tiny_model_dir):
    # At a high temperature the tiny model's next-token distribution is nearly flat over ~850 tokens, so
    # 400 draws without top-k show far more than 50 distinct tokens (generate's default top-k is 50).
    processor, model, batch = _setup(tiny_model_dir, "qwen2", [_records()[1]])
    params = SamplingParams(num_samples=400, temperature=50.0, max_new_tokens=1, return_logprobs=True)
    torch.manual_seed(0)
    rollout = HFRolloutBackend(processor, decoder=decoder).generate(model, batch, params)
    assert len(set(rollout.response_ids[:, 0].tolist())) > 80
