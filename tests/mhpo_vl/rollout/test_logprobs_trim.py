"""token_logprobs skips padding columns no row attends to, with the same log-probs as the full forward."""

from __future__ import annotations

import torch

from mhpo_vl.config import ModelConfig
from mhpo_vl.models import load_policy
from mhpo_vl.rollout.logprobs import token_logprobs, trim_padding


def _batch(pad: int = 0) -> tuple[dict, torch.Tensor]:
    """Two rows: prompts left-padded (3 and 5 tokens in width 7), responses right-padded (2 and 3 in width 6)."""
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(5, 100, (2, 7), generator=g)
    pmask = torch.tensor([[0, 0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]])
    resp = torch.randint(5, 100, (2, 6), generator=g)
    rmask = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]])
    prompt = torch.where(pmask.bool(), prompt, pad)
    resp = torch.where(rmask.bool(), resp, pad)
    inputs = {"input_ids": torch.cat([prompt, resp], 1), "attention_mask": torch.cat([pmask, rmask], 1)}
    return inputs, resp


def test_trim_padding_drops_unattended_columns() -> None:
    inputs, resp = _batch()
    trimmed, resp_t = trim_padding(inputs, resp)
    assert resp_t.shape == (2, 3)  # the longest response
    assert trimmed["input_ids"].shape == (2, 5 + 3)  # 2 leading all-pad prompt columns and 3 trailing dropped
    assert trimmed["attention_mask"][:, -3:].tolist() == [[1, 1, 0], [1, 1, 1]]


def test_trimmed_logprobs_match_the_full_forward(tiny_model_dir) -> None:
    model = load_policy(ModelConfig(name_or_path=str(tiny_model_dir("qwen2")))).eval()
    inputs, resp = _batch()
    with torch.no_grad():
        logp, entropy = token_logprobs(model, inputs, resp, temperature=0.7, with_entropy=True)
        full = model(**inputs, use_cache=False).logits[:, -7:-1].float() / 0.7
    expected = torch.log_softmax(full, -1).gather(-1, resp[..., None]).squeeze(-1)
    mask = inputs["attention_mask"][:, -6:].bool()
    assert logp.shape == entropy.shape == (2, 6)
    torch.testing.assert_close(logp[mask], expected[mask], rtol=1e-4, atol=1e-4)
    assert (logp[:, 3:] == 0).all() and (entropy[:, 3:] == 0).all()  # beyond the longest response
