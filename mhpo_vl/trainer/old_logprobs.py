"""What the policy update compares against: pi_old's log-probs, the reference's, and the sampler's.

Three cases, cheapest first:

* one optimizer step per batch, sampled by the trainer's own model (HF backend): pi_old is the
  sampling-time log-probs of the rollout, no forward at all;
* one optimizer step, sampled by another engine (vLLM): the update's own forward *is* pi_old (the
  ratio is 1), so no separate forward either; each micro-batch's logits also give the trainer's view
  of the sampler's processed log-probs, from which the rollout importance weights (algo.rollout_is)
  are computed before its backward (:class:`InlineCorrection`);
* several optimizer steps (PPO epochs, mini-batches): one no-grad forward before the update gives
  pi_old (and, for another engine, the sampler view from the same logits).

A KL penalty adds one no-grad forward of the reference model (or of the policy with its LoRA adapter off).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from mhpo_vl.algos.rollout_is import rollout_is_weights
from mhpo_vl.rollout.logprobs import LogitsSink, micro_batches, select_rows, token_logprobs
from mhpo_vl.rollout.mismatch import SamplerView, logprobs_with_sampler_view
from mhpo_vl.rollout.types import Rollout
from mhpo_vl.trainer.batching import mini_batch_count, mini_batch_slices


class InlineCorrection:
    """pi_old and the rollout importance weights taken from the update's own forward (one optimizer step).

    Per micro-batch: :meth:`sink` (rows) goes to the log-prob function and records the trainer's view of
    the sampler's log-probs; :meth:`take` (rows, logp, advantages) records pi_old = logp.detach() and
    returns (old (rows, T), advantages times the importance weights (rows, T)). After the update
    :attr:`old_logp` is pi_old (N, T) and :meth:`weighted` gives the weighted advantages and the
    rollout/* mismatch metrics.
    """

    def __init__(self, sampler_logp: torch.Tensor, mask: torch.Tensor, view: SamplerView, mode: str, cap: float):
        self.sampler_logp, self.mask, self.view, self.mode, self.cap = sampler_logp, mask, view, mode, cap
        self.old_logp = torch.zeros_like(sampler_logp, dtype=torch.float32)
        self.trainer_view = torch.zeros_like(sampler_logp, dtype=torch.float32)
        self.taken = torch.zeros(sampler_logp.shape[0], dtype=torch.bool, device=sampler_logp.device)

    def sink(self, rows: slice) -> LogitsSink:
        def record(logits: torch.Tensor, ids: torch.Tensor) -> None:
            self.trainer_view[rows, : ids.shape[1]] = self.view.logprobs(logits, ids)
        return record

    def take(self, rows: slice, logp: torch.Tensor, advantages: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        old = logp.detach().float()
        self.old_logp[rows] = old
        self.taken[rows] = True
        weights, _ = rollout_is_weights(self.trainer_view[rows], self.sampler_logp[rows], self.mask[rows],
                                        mode=self.mode, cap=self.cap)
        return old, (advantages[:, None] if advantages.dim() == 1 else advantages) * weights

    def weighted(self, advantages: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted advantages (N, T) and the rollout/* metrics over the rows taken (all of them, unless a
        non-finite loss stopped the update early; rows not taken get weight 0)."""
        mask = self.mask * self.taken[:, None].to(self.mask.dtype)
        weights, stats = rollout_is_weights(self.trainer_view, self.sampler_logp, mask, mode=self.mode, cap=self.cap)
        return advantages[:, None] * weights, {f"rollout/{k}": v for k, v in stats.items()}


@dataclass
class Baselines:
    """What the update needs: ``advantages`` to train on ((N,), or (N, T) importance-weighted), pi_old
    (N, T) or None (then ``inline`` provides it during the update) and the reference's (N, T) or None."""

    advantages: torch.Tensor
    old: torch.Tensor | None = None
    ref: torch.Tensor | None = None
    inline: InlineCorrection | None = None
    mismatch: dict[str, torch.Tensor] | None = None

    def after_update(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(the advantages trained on, pi_old (N, T), the rollout/* metrics), once the update has run."""
        if self.inline is not None:
            advantages, mismatch = self.inline.weighted(self.advantages)
            return advantages, self.inline.old_logp, mismatch
        return self.advantages, self.old, self.mismatch or {}


class OldLogprobs:
    """Computes :class:`Baselines` for one rollout. ``accelerator`` gives autocast and the device."""

    def __init__(self, cfg: Any, accelerator: Any, vision_start_id: int | None, view: SamplerView):
        self.cfg, self.accelerator, self.vision_start_id, self.view = cfg, accelerator, vision_start_id, view

    def forward(self, model: torch.nn.Module, rollout: Rollout, inputs: dict, sampler_view: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """No-grad log-probs of all responses in micro-batches (N, T), and with ``sampler_view`` the same
        tokens under the sampler's processed distribution (see rollout.mismatch), from the same logits."""
        out, views = [], []
        with torch.no_grad(), self.accelerator.autocast():
            for rows in micro_batches(len(rollout), self.cfg.trainer.micro_batch_size):
                part = select_rows(inputs, rows, self.vision_start_id)
                ids = rollout.response_ids[rows].to(self.accelerator.device)
                if sampler_view:
                    logp, processed = logprobs_with_sampler_view(model, part, ids, temperature=self.cfg.rollout.temperature,
                                                                 view=self.view)
                    views.append(processed)
                else:
                    logp, _ = token_logprobs(model, part, ids, self.cfg.rollout.temperature)
                out.append(logp)
        return torch.cat(out), (torch.cat(views) if views else None)

    def compute(self, policy: torch.nn.Module, reference: torch.nn.Module | None, rollout: Rollout, inputs: dict,
                advantages: torch.Tensor, *, other_engine: bool) -> Baselines:
        """``policy`` is the (wrapped) training model, ``reference`` a separate reference model or None
        (then the policy's LoRA adapter is switched off for the KL reference); advantages (N,) on device."""
        algo = self.cfg.algo
        # one optimizer step per batch: one PPO epoch of one global mini-batch (the slices policy_update takes)
        one_step = algo.ppo_epochs == 1 and len(mini_batch_slices(len(rollout), mini_batch_count(self.cfg))) == 1
        device = self.accelerator.device
        sampled = rollout.logprobs.to(device) if rollout.logprobs is not None else None
        mask = rollout.response_mask.to(device)
        out = Baselines(advantages=advantages)
        if one_step and sampled is not None and not other_engine:
            out.old = sampled  # reused from rollout time: no extra forward
        elif one_step and sampled is not None:
            out.inline = InlineCorrection(sampled, mask, self.view, algo.rollout_is, algo.rollout_is_cap)
        else:
            out.old, view = self.forward(policy, rollout, inputs, sampler_view=other_engine and sampled is not None)
            if view is not None:
                weights, stats = rollout_is_weights(view, sampled, mask, mode=algo.rollout_is, cap=algo.rollout_is_cap)
                out.advantages = advantages[:, None] * weights
                out.mismatch = {f"rollout/{k}": v for k, v in stats.items()}
        if algo.kl_coef > 0:
            unwrapped = self.accelerator.unwrap_model(policy)
            adapter_off = unwrapped.disable_adapter() if reference is None else contextlib.nullcontext()
            with adapter_off:
                out.ref = self.forward(policy if reference is None else reference, rollout, inputs)[0]
        return out
