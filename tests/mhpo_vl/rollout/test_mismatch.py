"""The trainer's view of the sampler's processed distribution (masks, top-k, top-p) on constructed logits."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from mhpo_vl.rollout.mismatch import processed_logprobs


def _reference(logits: torch.Tensor, top_k: int, top_p: float, banned: list[int]) -> torch.Tensor:
    """(N*T, V) log-probs after HF's own warpers (same rules as vLLM's sampler)."""
    flat = logits.reshape(-1, logits.shape[-1]).clone()
    flat[:, banned] = float("-inf")
    if top_k:
        flat = TopKLogitsWarper(top_k)(None, flat)
    if top_p < 1:
        flat = TopPLogitsWarper(top_p)(None, flat)
    return torch.log_softmax(flat, dim=-1)


@pytest.mark.parametrize("top_k,top_p", [(0, 1.0), (5, 1.0), (0, 0.7), (8, 0.9)])
def test_matches_hf_warpers(top_k, top_p):
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 32) * 2
    probs = torch.softmax(logits, -1)
    tokens = torch.multinomial(probs.reshape(-1, 32), 1).reshape(3, 4)
    banned = [30, 31]
    ref = _reference(logits, top_k, top_p, banned).gather(1, tokens.reshape(-1, 1)).reshape(3, 4)
    out = processed_logprobs(logits, tokens, top_k=top_k, top_p=top_p, banned_ids=banned)
    keep = torch.isfinite(ref)
    assert torch.allclose(out[keep], ref[keep], atol=1e-5)
    assert torch.equal(torch.isfinite(out), keep)  # tokens outside the kept set are -inf in both


def test_no_truncation_is_plain_log_softmax():
    logits = torch.randn(2, 3, 10)
    tokens = torch.randint(0, 10, (2, 3))
    plain = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)
    assert torch.allclose(processed_logprobs(logits, tokens), plain, atol=1e-6)
    # Banning tokens renormalises over the rest: log-probs rise by -log(1 - banned mass).
    banned_mass = torch.softmax(logits, -1)[..., [0]].squeeze(-1)
    safe = tokens != 0
    shifted = processed_logprobs(logits, tokens, banned_ids=[0])
    assert torch.allclose(shifted[safe], (plain - torch.log1p(-banned_mass))[safe], atol=1e-5)


def test_top_p_keeps_the_most_likely_token():
    logits = torch.tensor([[[10.0, 0.0, 0.0]]])
    out = processed_logprobs(logits, torch.tensor([[0]]), top_p=0.01)
    assert out.item() == pytest.approx(0.0, abs=1e-6)
