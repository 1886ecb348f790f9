"""Grouped generation, response masks, rollout-time log-probs and image encoding once per prompt."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from mhpo_vl.config import ModelConfig
from mhpo_vl.data import PromptCollator
from mhpo_vl.models import load_policy, load_processor
from mhpo_vl.rollout import (
    build_sequence_inputs,
    expand_inputs,
    generate,
    response_mask_from_ids,
    token_logprobs,
)
from mhpo_vl.rollout.hf import vision_token_ids


def _records():
    return [
        {"id": "a", "prompt": "What colour?", "answer": "red", "images": [Image.new("RGB", (56, 56), "red")]},
        {"id": "b", "prompt": "Text only question", "answer": "3", "images": []},
        {"id": "c", "prompt": "Two images", "answer": "x",
         "images": [Image.new("RGB", (56, 56), "blue"), Image.new("RGB", (84, 56), "green")]},
    ]


def test_response_mask_first_eos_inclusive_and_truncation():
    ids = torch.tensor([[5, 6, 2, 0, 0], [5, 6, 7, 8, 9], [2, 0, 0, 0, 0]])
    mask, truncated = response_mask_from_ids(ids, eos_ids=[2], pad_id=0)
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert truncated.tolist() == [False, True, False]
    stopped = torch.tensor([False, False, False])
    ids2 = torch.tensor([[5, 6, 0, 0, 0]])
    mask2, trunc2 = response_mask_from_ids(ids2, eos_ids=[2], pad_id=0, stopped_by_string=torch.tensor([True]))
    assert mask2.tolist() == [[1, 1, 0, 0, 0]] and trunc2.tolist() == [False]
    assert stopped.sum() == 0


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen3_vl", "qwen2_vl"])
def test_rollout_logprobs_match_training_forward(arch, tiny_model_dir):
    cfg = ModelConfig(name_or_path=str(tiny_model_dir(arch)), min_pixels=28 * 28, max_pixels=112 * 112)
    processor, model = load_processor(cfg), load_policy(cfg)
    batch = PromptCollator(processor, template="plain")(_records())
    torch.manual_seed(0)
    rollout = generate(model, processor, batch, num_samples=3, temperature=0.8, max_new_tokens=6,
                       return_logprobs=True)
    assert len(rollout) == 9 and len(rollout.texts) == 9 and rollout.group_size == 3
    assert rollout.logprobs.shape == rollout.response_ids.shape
    vision_start = processor.tokenizer.convert_tokens_to_ids("<|vision_start|>")
    once = build_sequence_inputs(rollout, model, vision_start, reuse_vision=True)
    per_sample = build_sequence_inputs(rollout, model, vision_start, reuse_vision=False)
    assert "mm_encoder_outputs" in once and "pixel_values" in per_sample
    with torch.no_grad():
        lp_once, entropy = token_logprobs(model, once, rollout.response_ids, 0.8, with_entropy=True)
        lp_pixels, _ = token_logprobs(model, per_sample, rollout.response_ids, 0.8)
    m = rollout.response_mask.bool()
    assert torch.allclose(lp_once[m], rollout.logprobs[m], atol=1e-4)
    assert torch.allclose(lp_once[m], lp_pixels[m], atol=1e-5)
    assert (entropy[m] >= 0).all()
    banned = set(vision_token_ids(processor.tokenizer))
    assert not banned & set(rollout.response_ids[m].tolist()), "vision special tokens must never be sampled"


def test_expand_inputs_repeats_each_prompts_images(tiny_model_dir):
    cfg = ModelConfig(name_or_path=str(tiny_model_dir("qwen2_5_vl")), min_pixels=28 * 28, max_pixels=112 * 112)
    processor = load_processor(cfg)
    batch = PromptCollator(processor, template="plain")(_records())
    vs = processor.tokenizer.convert_tokens_to_ids("<|vision_start|>")
    out = expand_inputs(batch.inputs, 2, vs)
    assert out["input_ids"].shape[0] == 6
    grid = batch.inputs["image_grid_thw"]
    assert out["image_grid_thw"].tolist() == [grid[0].tolist()] * 2 + [grid[1].tolist(), grid[2].tolist()] * 2
    patches = grid.prod(-1).tolist()
    pv = batch.inputs["pixel_values"]
    first = pv[: patches[0]]
    assert torch.equal(out["pixel_values"][: patches[0]], first)
    assert torch.equal(out["pixel_values"][patches[0]: 2 * patches[0]], first)
    assert out["pixel_values"].shape[0] == 2 * sum(patches)


def test_text_model_rollout_and_stop_strings(tiny_model_dir):
    cfg = ModelConfig(name_or_path=str(tiny_model_dir("qwen2")))
    processor, model = load_processor(cfg), load_policy(cfg)
    batch = PromptCollator(processor, template="plain")([_records()[1]])
    torch.manual_seed(1)
    rollout = generate(model, processor, batch, num_samples=4, temperature=1.0, max_new_tokens=8,
                       stop_strings=["e"], return_logprobs=True)
    tok = processor  # a text model's processor is its tokenizer
    stopped = 0
    for row, (text, length) in enumerate(zip(rollout.texts, rollout.response_lengths.tolist())):
        assert length >= 1
        if "e" in text:  # generation stopped at the token that completed the stop string
            stopped += 1
            assert "e" not in tok.decode(rollout.response_ids[row][: length - 1], skip_special_tokens=True)
            assert not rollout.truncated[row]
    assert stopped > 0, "the tiny model should hit 'e' at least once in 4 samples of 8 tokens"
    greedy_a = generate(model, processor, batch, num_samples=1, temperature=0.0, max_new_tokens=5)
    greedy_b = generate(model, processor, batch, num_samples=1, temperature=0.0, max_new_tokens=5)
    assert greedy_a.texts == greedy_b.texts and greedy_a.logprobs is None
