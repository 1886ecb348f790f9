"""Shared-prefix training log-probs (each prompt run once for its G responses) equal the full forward's."""

from __future__ import annotations

import pytest
import torch

from mhpo_vl.rollout import HFRolloutBackend, SamplingParams, build_sequence_inputs, token_logprobs
from mhpo_vl.rollout.shared_prefix import (
    build_prompt_inputs,
    build_update_inputs,
    shared_prefix_logprobs,
    shared_prefix_supported,
)
from tests.mhpo_vl.rollout.test_decode import _records, _setup


@pytest.mark.parametrize("arch,reuse_vision", [("qwen2_vl", True), ("qwen2_vl", False), ("qwen2_5_vl", True),
                                               ("qwen3_vl", True), ("qwen2", True)])
def test_shared_prefix_logprobs_and_gradients_equal_the_full_forward(arch, reuse_vision, tiny_model_dir):
    records = _records() if arch != "qwen2" else [_records()[0] | {"images": []}, _records()[1]]
    processor, model, batch = _setup(tiny_model_dir, arch, records)
    assert shared_prefix_supported(model)
    torch.manual_seed(0)
    params = SamplingParams(num_samples=3, temperature=0.8, max_new_tokens=9, return_logprobs=True)
    rollout = HFRolloutBackend(processor).generate(model, batch, params)
    tok = getattr(processor, "tokenizer", processor)
    vs = tok.convert_tokens_to_ids("<|vision_start|>")
    mask = rollout.response_mask

    def loss_and_grads(logp):
        model.zero_grad(set_to_none=True)
        (logp * mask).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    full_inputs = build_sequence_inputs(rollout, model, vs, reuse_vision=reuse_vision)
    full, full_entropy = token_logprobs(model, full_inputs, rollout.response_ids, 0.8, with_entropy=True)
    full_grads = loss_and_grads(full)
    prompt_inputs = build_prompt_inputs(rollout.prompt_inputs, model, vs, reuse_vision=reuse_vision)
    shared, shared_entropy = shared_prefix_logprobs(model, prompt_inputs, rollout.response_ids, mask, 3, 0.8,
                                                    with_entropy=True)
    shared_grads = loss_and_grads(shared)
    m = mask.bool()
    torch.testing.assert_close(shared[m], full[m], atol=1e-4, rtol=0)
    torch.testing.assert_close(shared_entropy[m], full_entropy[m], atol=1e-4, rtol=0)
    torch.testing.assert_close(shared[m], rollout.logprobs[m], atol=1e-4, rtol=0)
    assert (shared[~m] == 0).all()
    assert full_grads.keys() == shared_grads.keys() and full_grads
    for name, grad in full_grads.items():
        torch.testing.assert_close(shared_grads[name], grad, atol=1e-4, rtol=1e-3, msg=name)


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen3_vl"])
def test_update_inputs_run_the_vision_tower_once(arch, tiny_model_dir):
    processor, model, batch = _setup(tiny_model_dir, arch, _records())
    torch.manual_seed(0)
    rollout = HFRolloutBackend(processor).generate(
        model, batch, SamplingParams(num_samples=3, temperature=0.8, max_new_tokens=5, return_logprobs=True))
    vs = getattr(processor, "tokenizer", processor).convert_tokens_to_ids("<|vision_start|>")
    calls = []
    hook = model.model.visual.register_forward_hook(lambda *_: calls.append(1))
    inputs, prompt_inputs = build_update_inputs(rollout, model, vs, reuse_vision=True, shared_prefix=True)
    hook.remove()
    assert len(calls) == 1  # one vision pass serves the full sequences and the shared-prefix prompts
    separate = build_sequence_inputs(rollout, model, vs)
    separate_prompts = build_prompt_inputs(rollout.prompt_inputs, model, vs)
    for got, want in ((inputs, separate), (prompt_inputs, separate_prompts)):
        got_img, want_img = got["mm_encoder_outputs"]["image"], want["mm_encoder_outputs"]["image"]
        assert len(got_img.pooler_output) == len(want_img.pooler_output)
        for a, b in zip(got_img.pooler_output, want_img.pooler_output):
            torch.testing.assert_close(a, b)
        if arch == "qwen3_vl":
            for layer_a, layer_b in zip(got_img.deepstack_features, want_img.deepstack_features):
                for a, b in zip(layer_a, layer_b):
                    torch.testing.assert_close(a, b)
    shared = shared_prefix_logprobs(model, prompt_inputs, rollout.response_ids, rollout.response_mask, 3, 0.8)[0]
    full = token_logprobs(model, inputs, rollout.response_ids, 0.8)[0]
    m = rollout.response_mask.bool()
    torch.testing.assert_close(shared[m], full[m], atol=1e-4, rtol=0)
    assert build_update_inputs(rollout, model, vs, reuse_vision=True, shared_prefix=False)[1] is None
