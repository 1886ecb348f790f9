"""One policy update over a scored rollout: PPO epochs x mini-batches x micro-batches, NaN-guarded.

Mini-batches are global (``algo.mini_batch_size`` counts rows over all processes): the caller passes
their number per epoch (:func:`mhpo_vl.trainer.batching.mini_batch_count`), the same on every rank, and
each rank splits its own rows into that many slices, so every optimizer step sees one global
mini-batch (each rank's share of it) and all ranks take the same number of steps.

Per optimizer step the gradient of every micro-batch is weighted by its share of the mini-batch (rows,
or tokens for token-mean aggregation), so accumulation matches one big batch. A non-finite loss or
gradient norm skips the optimizer step and is counted. Under several processes the ranks agree on a
finite loss (``all_true``: one all-reduce per micro-batch, before backward), so a NaN on one rank makes
every rank skip together instead of leaving the others waiting in the gradient reduction.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from mhpo_vl.algos.aggregation import aggregate, as_bool_mask, masked_mean
from mhpo_vl.algos.kl import kl_penalty
from mhpo_vl.rollout.logprobs import LogitsSink, micro_batches, select_rows, token_logprobs
from mhpo_vl.rollout.shared_prefix import shared_prefix_logprobs
from mhpo_vl.trainer.batching import mini_batch_slices
from mhpo_vl.trainer.old_logprobs import InlineCorrection
from mhpo_vl.trainer.parallel import clip_grad_norm


@dataclass
class UpdateResult:
    """What one update did: summed metrics (detached tensors), optimizer steps taken and skipped, and the
    seconds spent in gradient clipping + optimizer steps."""

    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    steps: int = 0
    skipped: int = 0
    grad_norms: list[torch.Tensor] = field(default_factory=list)
    optimizer_s: float = 0.0

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            value = value.detach().float()
            if key.endswith("max"):
                self.metrics[key] = torch.maximum(self.metrics[key], value) if key in self.metrics else value
            elif key.endswith("min"):
                self.metrics[key] = torch.minimum(self.metrics[key], value) if key in self.metrics else value
            else:
                self.metrics[key] = self.metrics.get(key, 0.0) + value
                self.counts[key] = self.counts.get(key, 0) + 1

    def averaged(self) -> dict[str, torch.Tensor]:
        return {k: (v / self.counts[k] if k in self.counts else v) for k, v in self.metrics.items()}


def policy_update(
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    backward: Callable[[torch.Tensor], None],
    params: list[torch.nn.Parameter],
    inputs: dict[str, Any],
    response_ids: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    old_logp: torch.Tensor | None,
    loss_fn: Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]],
    hparams: dict[str, Any],
    agg: str,
    temperature: float,
    vision_start_id: int | None,
    ppo_epochs: int = 1,
    mini_batches: int = 1,
    micro_batch_size: int = 0,
    grad_clip: float = 1.0,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    no_sync: Callable[[], Any] | None = None,
    all_true: Callable[[torch.Tensor], bool] = bool,
    token_sink: Callable[[slice, torch.Tensor, torch.Tensor | None], None] | None = None,
    prompt_inputs: dict[str, Any] | None = None,
    group_size: int = 0,
    inline: InlineCorrection | None = None,
) -> UpdateResult:
    """Run the optimizer steps for one rollout. Shapes: response_ids/mask/old_logp (N, T), advantages (N,).

    Per PPO epoch, ``mini_batches`` optimizer steps, each over one of :func:`mini_batch_slices` (N,
    ``mini_batches``) (this rank's share of a global mini-batch), in micro-batches of ``micro_batch_size``.

    ``token_sink(rows, logp, entropy)``, when given, sees every micro-batch's (rows, T) log-probs and
    entropies (e.g. to log rollouts); it must not keep the graph. With ``prompt_inputs`` (the P prompts,
    see shared_prefix.build_prompt_inputs) micro-batches that hold whole groups of ``group_size`` rows
    run each prompt once (shared_prefix_logprobs); others run the full sequences from ``inputs``.
    With ``inline`` (one optimizer step only) ``old_logp`` is None: pi_old and the rollout importance
    weights come from each micro-batch's own forward (see trainer.old_logprobs).
    """
    result = UpdateResult()
    n = response_ids.shape[0]
    device = response_ids.device
    if (inline is None) == (old_logp is None):
        raise ValueError("policy_update needs exactly one of old_logp and inline")
    minis = mini_batch_slices(n, mini_batches)
    if inline is not None and (ppo_epochs > 1 or len(minis) > 1):
        raise ValueError("inline old log-probs need one optimizer step per batch (ppo_epochs 1, one mini-batch)")
    for _ in range(ppo_epochs):
        for mini in minis:
            optimizer.zero_grad(set_to_none=True)
            micros = micro_batches(mini.stop - mini.start, micro_batch_size)
            mini_mask = mask[mini]
            total_tokens = mini_mask.sum().clamp(min=1)
            finite = True
            for k, micro in enumerate(micros):
                rows = slice(mini.start + micro.start, mini.start + micro.stop)
                sync = no_sync() if (no_sync is not None and k < len(micros) - 1) else contextlib.nullcontext()
                with sync:
                    logp, entropy = _micro_logprobs(model, inputs, prompt_inputs, group_size, rows, response_ids,
                                                    mask, temperature, vision_start_id,
                                                    inline.sink(rows) if inline is not None else None)
                    if token_sink is not None:
                        token_sink(rows, logp, entropy)
                    if inline is not None:
                        old, adv = inline.take(rows, logp, advantages[rows])
                    else:
                        old, adv = old_logp[rows], advantages[rows]
                    loss, metrics = loss_fn(logp, old, adv, mask[rows], **hparams)
                    if kl_coef > 0 and ref_logp is not None:
                        kl = aggregate(kl_penalty(logp, ref_logp[rows], kl_estimator, mask=mask[rows]), mask[rows], agg)
                        loss = loss + kl_coef * kl
                        metrics = {**metrics, "kl": kl.detach()}
                    if agg == "token-mean":
                        weight = mask[rows].sum() / total_tokens
                    else:
                        weight = torch.tensor((rows.stop - rows.start) / (mini.stop - mini.start), device=device)
                    if not all_true(torch.isfinite(loss)):  # every rank takes the same branch
                        finite = False
                        break
                    backward(loss * weight)
                metrics = {**metrics, "loss": loss.detach(), "entropy": masked_mean(entropy, as_bool_mask(mask[rows]))}
                result.add(metrics)
            t0 = time.perf_counter()
            norm = clip_grad_norm(params, grad_clip) if finite else torch.tensor(float("nan"))
            if not finite or not torch.isfinite(norm):
                optimizer.zero_grad(set_to_none=True)
                result.skipped += 1
                continue
            optimizer.step()
            result.optimizer_s += time.perf_counter() - t0
            result.steps += 1
            result.grad_norms.append(norm.detach())
    return result



def _micro_logprobs(model: torch.nn.Module, inputs: dict[str, Any], prompt_inputs: dict[str, Any] | None,
                    group_size: int, rows: slice, response_ids: torch.Tensor, mask: torch.Tensor,
                    temperature: float, vision_start_id: int | None, logits_sink: LogitsSink | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(rows, T) log-probs and entropies of one micro-batch: shared-prefix when it holds whole groups."""
    g = group_size
    if prompt_inputs is not None and g > 0 and rows.start % g == 0 and rows.stop % g == 0:
        prompts = select_rows(prompt_inputs, slice(rows.start // g, rows.stop // g), vision_start_id)
        return shared_prefix_logprobs(model, prompts, response_ids[rows], mask[rows], g, temperature,
                                      with_entropy=True, logits_sink=logits_sink)
    part = select_rows(inputs, rows, vision_start_id)
    return token_logprobs(model, part, response_ids[rows], temperature, with_entropy=True, logits_sink=logits_sink)
