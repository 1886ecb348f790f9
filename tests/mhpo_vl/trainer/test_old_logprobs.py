"""pi_old and the rollout mismatch correction taken inside the update's own forward (one optimizer step,
another engine) give the same update as a separate no-grad forward before it."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator

from mhpo_vl.algos import get_policy_loss, loss_defaults
from mhpo_vl.algos.rollout_is import rollout_is_weights
from mhpo_vl.rollout import HFRolloutBackend, SamplingParams, build_sequence_inputs
from mhpo_vl.rollout.hf import vision_token_ids
from mhpo_vl.rollout.mismatch import SamplerView
from mhpo_vl.rollout.shared_prefix import build_prompt_inputs
from mhpo_vl.trainer.old_logprobs import InlineCorrection, OldLogprobs
from mhpo_vl.trainer.update import policy_update
from tests.mhpo_vl.rollout.test_decode import _records, _setup


def _cfg(mode: str, top_k: int = 0, micro: int = 0):
    return SimpleNamespace(trainer=SimpleNamespace(micro_batch_size=micro),
                           rollout=SimpleNamespace(temperature=0.8, top_k=top_k, top_p=1.0),
                           algo=SimpleNamespace(ppo_epochs=1, mini_batch_size=0, rollout_is=mode,
                                                rollout_is_cap=2.0, kl_coef=0.0))


def _update(model, rollout, inputs, advantages, vs, *, old_logp=None, inline=None, prompt_inputs=None):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss_fn = get_policy_loss("mhpo")
    return policy_update(model=model, optimizer=optimizer, backward=lambda loss: loss.backward(),
                         params=list(model.parameters()), inputs=inputs, response_ids=rollout.response_ids,
                         mask=rollout.response_mask, advantages=advantages, old_logp=old_logp, inline=inline,
                         loss_fn=loss_fn, hparams=loss_defaults("mhpo"), agg="seq-mean-token-mean", temperature=0.8,
                         vision_start_id=vs,
                         micro_batch_size=3, grad_clip=1e9, prompt_inputs=prompt_inputs, group_size=3)


@pytest.mark.parametrize("mode,top_k,shared", [("token_tis", 0, False), ("seq_mis", 5, True),
                                                ("token_tis", 5, True)])
def test_inline_correction_equals_a_separate_forward(mode, top_k, shared, tiny_model_dir):
    processor, model, batch = _setup(tiny_model_dir, "qwen2_vl", _records())
    torch.manual_seed(0)
    rollout = HFRolloutBackend(processor).generate(
        model, batch, SamplingParams(num_samples=3, temperature=0.8, top_k=top_k, max_new_tokens=7,
                                     return_logprobs=True))
    tok = getattr(processor, "tokenizer", processor)
    vs = tok.convert_tokens_to_ids("<|vision_start|>")
    view = SamplerView(top_k=top_k, banned_ids=tuple(vision_token_ids(tok)))
    inputs = build_sequence_inputs(rollout, model, vs)
    prompt_inputs = build_prompt_inputs(rollout.prompt_inputs, model, vs) if shared else None
    advantages = torch.linspace(-1.0, 1.0, len(rollout))
    mask = rollout.response_mask
    model_a, model_b = copy.deepcopy(model), copy.deepcopy(model)

    # A: a separate no-grad forward gives pi_old and the sampler view, then the update
    computer = OldLogprobs(_cfg(mode, top_k), Accelerator(cpu=True), vs, view)
    old, sampler_view = computer.forward(model_a, rollout, inputs, sampler_view=True)
    # the other engine's log-probs: the trainer's view of them, off by a known per-token amount
    noise = torch.randn(mask.shape, generator=torch.Generator().manual_seed(1)) * 0.2
    rollout.logprobs = (sampler_view + noise) * mask
    base = computer.compute(model_a, None, rollout, inputs, advantages, other_engine=True)
    assert base.inline is not None and base.old is None  # one step + another engine: the inline path
    weights, stats = rollout_is_weights(sampler_view, rollout.logprobs, mask, mode=mode, cap=2.0)
    if mode == "seq_mis":
        assert 0.0 < float(stats["masked_frac"]) < 1.0
    else:
        assert (weights[mask.bool()] != 1.0).any()  # the correction is not trivial
    _update(model_a, rollout, inputs, advantages[:, None] * weights, vs, old_logp=old, prompt_inputs=prompt_inputs)

    # B: the same from the update's own forward
    inline = InlineCorrection(rollout.logprobs, mask, view, mode, 2.0)
    result = _update(model_b, rollout, inputs, advantages, vs, inline=inline, prompt_inputs=prompt_inputs)
    assert result.steps == 1
    weighted, metrics = inline.weighted(advantages)
    m = mask.bool()
    torch.testing.assert_close(inline.old_logp[m], old[m], atol=1e-5, rtol=0)
    torch.testing.assert_close(inline.trainer_view[m], sampler_view[m], atol=1e-5, rtol=0)
    torch.testing.assert_close(weighted, advantages[:, None] * weights, atol=1e-5, rtol=0)
    for key, value in stats.items():
        torch.testing.assert_close(metrics[f"rollout/{key}"], value, atol=1e-5, rtol=1e-5)
    changed = 0
    for (name, a), b in zip(model_a.named_parameters(), model_b.parameters()):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4, msg=name)
        changed += int(not torch.equal(a, model.get_parameter(name)))
    assert changed > 0  # the step really moved the weights


def test_inline_refuses_several_optimizer_steps(tiny_model_dir):
    processor, model, batch = _setup(tiny_model_dir, "qwen2_vl", _records())
    rollout = HFRolloutBackend(processor).generate(
        model, batch, SamplingParams(num_samples=3, temperature=0.8, max_new_tokens=4, return_logprobs=True))
    inline = InlineCorrection(rollout.logprobs, rollout.response_mask, SamplerView(), "token_tis", 2.0)
    vs = getattr(processor, "tokenizer", processor).convert_tokens_to_ids("<|vision_start|>")
    inputs = build_sequence_inputs(rollout, model, vs)
    with pytest.raises(ValueError, match="one optimizer step"):
        policy_update(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), backward=lambda x: x.backward(),
                      params=list(model.parameters()), inputs=inputs, response_ids=rollout.response_ids,
                      mask=rollout.response_mask, advantages=torch.zeros(len(rollout)), old_logp=None, inline=inline,
                      loss_fn=get_policy_loss("grpo"), hparams=loss_defaults("grpo"), agg="token-mean",
                      temperature=0.8, vision_start_id=vs, ppo_epochs=2)


def test_inline_metrics_cover_only_the_rows_taken():
    """A non-finite loss stops the update after some micro-batches: the metrics ignore the rest."""
    torch.manual_seed(0)
    n, t, v = 6, 5, 11
    logits = torch.randn(n, t, v)
    ids = torch.randint(0, v, (n, t))
    mask = torch.ones(n, t)
    view = SamplerView()
    trainer = view.logprobs(logits, ids)
    sampler = trainer + 0.1 * torch.randn(n, t)
    inline = InlineCorrection(sampler, mask, view, "token_tis", 2.0)
    rows = slice(0, 3)
    inline.sink(rows)(logits[rows], ids[rows])
    inline.take(rows, trainer[rows], torch.ones(3))
    _, metrics = inline.weighted(torch.ones(n))
    _, want = rollout_is_weights(trainer[rows], sampler[rows], mask[rows], mode="token_tis", cap=2.0)
    for key, value in want.items():
        torch.testing.assert_close(metrics[f"rollout/{key}"], value)


@pytest.mark.parametrize(("mini", "one_step"), [(0, True), (18, True), (9, False), (6, False)])
def test_one_step_counts_global_mini_batches(mini, one_step, tiny_model_dir):
    """This rank holds 9 of an 18-row global batch (2 processes): algo.mini_batch_size = 18 is one optimizer
    step (pi_old is the rollout's, no forward), 9 are two steps (one no-grad forward gives pi_old)."""
    processor, model, batch = _setup(tiny_model_dir, "qwen2_vl", _records())
    rollout = HFRolloutBackend(processor).generate(
        model, batch, SamplingParams(num_samples=3, temperature=0.8, max_new_tokens=4, return_logprobs=True))
    assert len(rollout) == 9
    vs = getattr(processor, "tokenizer", processor).convert_tokens_to_ids("<|vision_start|>")
    cfg = _cfg("token_tis")
    cfg.algo.mini_batch_size = mini
    cfg.rollout.prompts_per_step, cfg.rollout.group_size = 6, 3  # the global batch: 18 rows
    computer = OldLogprobs(cfg, Accelerator(cpu=True), vs, SamplerView())
    base = computer.compute(model, None, rollout, build_sequence_inputs(rollout, model, vs), torch.zeros(9),
                            other_engine=False)
    assert (base.old is rollout.logprobs) == one_step
    torch.testing.assert_close(base.old * rollout.response_mask, rollout.logprobs * rollout.response_mask,
                               atol=1e-4, rtol=0)
