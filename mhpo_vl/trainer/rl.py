"""The RL loop: rollout -> rewards -> advantages -> old log-probs -> policy loss -> optimizer step.

Built on accelerate (one process by default; `accelerate launch -m mhpo_vl train ...` or `torchrun -m
mhpo_vl train ...` for several): each rank samples its share of the prompts, groups stay on one rank, and
metrics are reduced across ranks before logging. How the model is replicated or sharded across ranks
(``trainer.strategy``) is the business of :mod:`mhpo_vl.trainer.parallel`; this loop only asks it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from mhpo_vl.algos import compute_advantages, get_policy_loss, loss_defaults
from mhpo_vl.config import Config, config_to_dict, save_config
from mhpo_vl.errors import UserError
from mhpo_vl.models import is_vision_param, load_policy, load_processor
from mhpo_vl.models.dropout import disable_dropout
from mhpo_vl.models.processor import get_tokenizer, is_multimodal
from mhpo_vl.rewards import combine, reward_from_config
from mhpo_vl.rewards.modes import extraction_failures
from mhpo_vl.rollout.hf import vision_token_ids
from mhpo_vl.rollout.mismatch import SamplerView
from mhpo_vl.rollout.shared_prefix import build_update_inputs, shared_prefix_supported
from mhpo_vl.rollout.types import Rollout
from mhpo_vl.trainer import checkpoint as ckpt
from mhpo_vl.trainer.batching import mini_batch_count, require_even_split, require_mini_batch_split
from mhpo_vl.trainer.collect import Collected, Collector
from mhpo_vl.trainer.dry_run import dry_run_config
from mhpo_vl.trainer.metrics import (
    MetricsLogger,
    one_line_summary,
    read_metrics,
    reduce_metrics,
    summarize_run,
)
from mhpo_vl.trainer.mismatch_guard import check_rollout_mismatch
from mhpo_vl.trainer.old_logprobs import OldLogprobs
from mhpo_vl.trainer.parallel import Parallel
from mhpo_vl.trainer.plots import plot_metrics
from mhpo_vl.trainer.reward_faults import RewardFaults
from mhpo_vl.trainer.rollout_log import rollout_logger_for
from mhpo_vl.trainer.rollout_source import RolloutSource
from mhpo_vl.trainer.setup import (
    ensure_dir,
    load_eval_records,
    load_train_data,
    make_accelerator,
    make_optimizer,
    make_scheduler,
    owned_process_group,
    run_eval,
    seed_everything,
)
from mhpo_vl.trainer.update import policy_update

log = logging.getLogger(__name__)


def resolve_loss(cfg: Config) -> tuple[Any, dict[str, Any], str]:
    """(loss fn, hparams to pass, effective aggregation) for ``cfg.algo``; unknown hparams name the key."""
    try:
        fn = get_policy_loss(cfg.algo.name)
    except KeyError as exc:
        raise UserError(f"algo.name: {exc.args[0]}") from None
    defaults = loss_defaults(cfg.algo.name)
    hparams = cfg.algo.loss_hparams()
    for key in hparams:
        if key not in defaults:
            raise UserError(f"algo.{key} is not a hyperparameter of {cfg.algo.name} "
                            f"(it takes: {', '.join(sorted(defaults))})")
    agg = hparams.get("agg", defaults.get("agg", "seq-mean-token-mean"))
    if agg == "seq-mean-token-sum-norm" and "max_len" in defaults:
        hparams["max_len"] = cfg.rollout.max_new_tokens  # Dr.GRPO's constant is the generation budget
    return fn, hparams, agg


class RLTrainer:
    """Owns the model, optimizer, data position and run directory of one RL run."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.accelerator = make_accelerator(cfg.trainer.mixed_precision)
        self.parallel = Parallel.from_config(cfg.trainer, self.accelerator)
        require_even_split(cfg.rollout.prompts_per_step, self.parallel.world, "rollout.prompts_per_step")
        require_mini_batch_split(cfg.algo.mini_batch_size, self.parallel.world)
        seed_everything(cfg.trainer.seed + self.accelerator.process_index)
        self.run_dir = ensure_dir(cfg.trainer.output_dir)
        self.loss_fn, self.hparams, self.agg = resolve_loss(cfg)
        dataset = load_train_data(cfg)  # data errors before the model loads
        self.eval_records = load_eval_records(cfg)
        self.processor = load_processor(cfg.model)
        self.tokenizer = get_tokenizer(self.processor)
        # FSDP2, several processes: only rank 0 reads the weights; the others build on the meta device and
        # get rank 0's weights (resumed ones included) while wrap() shards
        model = load_policy(cfg.model, on_meta=self.parallel.builds_on_meta)
        disable_dropout(model)  # pi must equal the sampler's policy at equal weights (SFT keeps dropout)
        self.resume_from = self._resume_path()
        if self.resume_from is not None:  # weights go in before sharding; optimizer and RNG in train()
            if self.parallel.builds_on_meta:
                ckpt.read_trainer_state(self.resume_from)  # the same clear error as rank 0 for a bad path
            else:
                ckpt.load_model_weights(self.resume_from, model)
        model = self.parallel.wrap(model)
        self.vision_start_id = (self.tokenizer.convert_tokens_to_ids("<|vision_start|>")
                                if is_multimodal(self.processor) else None)
        # one process (DDP/FSDP expect one forward per backward), a model that takes a KV cache in training
        self.shared_prefix = (cfg.trainer.shared_prefix and self.parallel.world == 1
                              and shared_prefix_supported(model))
        self.reuse_vision = not any(p.requires_grad for n, p in model.named_parameters() if is_vision_param(n))
        optimizer, self.params = make_optimizer(model, cfg.trainer.lr, cfg.trainer.weight_decay,
                                                (cfg.trainer.adam_beta1, cfg.trainer.adam_beta2))
        scheduler = make_scheduler(optimizer, cfg.trainer.lr_schedule, cfg.trainer.warmup_steps,
                                   cfg.trainer.max_steps, cfg.trainer.min_lr_ratio)
        # The schedule is stepped once per trainer step whatever the number of processes (accelerate's
        # prepared scheduler would step it once per process).
        self.model, self.optimizer = self.parallel.prepare(model, optimizer)
        self.scheduler = scheduler
        self.ref_model = self._reference_model() if cfg.algo.kl_coef > 0 else None
        self.reward = reward_from_config(cfg.reward)
        self.reward_faults = RewardFaults(self.reward.names)
        accuracy = None if "accuracy" in cfg.reward.components else combine({"accuracy": 1.0})
        self.collector = Collector(cfg, self.reward, self.reward_faults, accuracy, self.parallel,
                                   self.tokenizer.pad_token_id, self.vision_start_id)
        self.reward.warm_up()  # start the verifier and reward workers now, not inside the first step's timing
        self.source = RolloutSource(cfg, self.processor, dataset, self.accelerator, self.parallel)
        self.rollout_log = rollout_logger_for(cfg, self.run_dir, self.tokenizer, self.hparams,
                                              self.accelerator.is_main_process)
        r = cfg.rollout
        self.old_logprobs = OldLogprobs(cfg, self.accelerator, self.vision_start_id,
                                        SamplerView(r.top_k, r.top_p, tuple(vision_token_ids(self.tokenizer))))
        self.step = 0
        self.bad_in_a_row = 0
        self.skipped_total = 0

    # ------------------------------------------------------------------ pieces
    def _reference_model(self) -> torch.nn.Module | None:
        if self.cfg.model.lora.enabled:
            return None  # the policy with adapters disabled
        return self.parallel.wrap_reference(load_policy(self.cfg.model, on_meta=self.parallel.builds_on_meta))

    @property
    def unwrapped(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def _generate(self, n_prompts: int) -> Rollout:
        """The next ``n_prompts`` global prompts' rollouts (the hook dynamic sampling calls)."""
        return self.source.generate(n_prompts, self.model)

    def _collect(self) -> Collected:
        """This step's scored rollouts (see :class:`Collector`)."""
        return self.collector.collect(self._generate)

    def sync_rollout_weights(self) -> None:
        """Push the trainer's weights into the rollout engine (a no-op for the HF backend)."""
        self.source.sync_weights(self.model)

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        t_start = time.perf_counter()
        rollout, rewards, components, accuracy, timing = self._collect()
        timing.update(self.reward_faults.settle(self.accelerator, cfg.trainer.max_reward_error_frac, self.step + 1))
        advantages, adv_stats = compute_advantages(rewards, rollout.group_size, cfg.algo.advantage,
                                                   std_normalize=cfg.algo.std_normalize)
        device = self.accelerator.device
        t_update = time.perf_counter()
        # The vision tower runs here only when frozen (reuse_vision), in the training dtype like the update's
        # forward (fp32 weights outside autocast would also make flash attention refuse it).
        with torch.no_grad(), self.accelerator.autocast():
            inputs, prompt_inputs = build_update_inputs(rollout, self.model, self.vision_start_id,
                                                        reuse_vision=self.reuse_vision, shared_prefix=self.shared_prefix)
        t_logprob = time.perf_counter()
        advantages = advantages.to(device)
        base = self.old_logprobs.compute(self.model, self.ref_model, rollout, inputs, advantages,
                                         other_engine=self.source.needs_weight_sync)
        timing["time/logprob"] = time.perf_counter() - t_logprob
        mask = rollout.response_mask.to(device)
        recorder = self.rollout_log.recorder(self.step + 1, rollout) if self.rollout_log is not None else None
        self.model.train()
        with self.accelerator.autocast():
            result = policy_update(
                model=self.model, optimizer=self.optimizer, backward=self.accelerator.backward, params=self.params,
                inputs=inputs, response_ids=rollout.response_ids.to(device), mask=mask,
                advantages=base.advantages, old_logp=base.old, inline=base.inline, loss_fn=self.loss_fn, hparams=self.hparams,
                agg=self.agg, temperature=cfg.rollout.temperature, vision_start_id=self.vision_start_id,
                ppo_epochs=cfg.algo.ppo_epochs, mini_batches=mini_batch_count(cfg),
                micro_batch_size=cfg.trainer.micro_batch_size, grad_clip=cfg.trainer.grad_clip,
                ref_logp=base.ref, kl_coef=cfg.algo.kl_coef, kl_estimator=cfg.algo.kl_estimator,
                no_sync=self.parallel.no_sync(self.model), all_true=self.parallel.all_true,
                token_sink=recorder, prompt_inputs=prompt_inputs, group_size=rollout.group_size,
            )
        advantages, old_logp, mismatch = base.after_update()
        if recorder is not None:
            self.rollout_log.submit(recorder, rollout, rewards=rewards, components=components, accuracy=accuracy,
                                    advantages=advantages, old_logp=old_logp)
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self._track_bad_steps(result)
        t_sync = time.perf_counter()
        if result.steps:
            self.sync_rollout_weights()
        t_end = time.perf_counter()
        timing.update({"time/optimizer": result.optimizer_s, "time/weight_sync": t_end - t_sync})
        lengths = rollout.response_lengths.float()
        tensors: dict[str, Any] = {f"loss/{k}" if k not in ("loss", "entropy", "kl") else k: v
                                   for k, v in result.averaged().items()}
        tensors.update({
            "reward/mean": rewards.mean(), "reward/std": rewards.std() if len(rewards) > 1 else torch.tensor(0.0),
            "accuracy": torch.tensor(accuracy).float().mean(),
            "response_length/mean": lengths.mean(), "response_length/max": lengths.max(),
            "response_length/clipped_frac": rollout.truncated.float().mean(),
            "zero_variance_groups": adv_stats["zero_variance_groups"],
            "extract_failure_rate": torch.tensor(extraction_failures(rollout.texts, cfg.reward.extract)),
            "grad_norm": torch.stack(result.grad_norms).mean() if result.grad_norms else torch.tensor(float("nan")),
        })
        tensors.update({f"reward/{k}": torch.tensor(v).float().mean() for k, v in components.items()})
        tensors.update(mismatch)
        metrics = reduce_metrics(tensors, self.accelerator)
        metrics.update(timing)
        metrics.update({"lr": lr, "skipped_steps": float(self.skipped_total), "optimizer_steps": result.steps,
                        "time/update": t_end - t_update,
                        "time/step": t_end - t_start,
                        "tokens_per_s": float(rollout.response_mask.sum()) / max(t_end - t_start, 1e-9)})
        return metrics

    def _track_bad_steps(self, result) -> None:
        self.skipped_total += result.skipped
        if result.skipped and not result.steps:
            self.bad_in_a_row += 1
        else:
            self.bad_in_a_row = 0
        if self.bad_in_a_row >= self.cfg.trainer.max_consecutive_bad_steps:
            raise UserError(f"{self.bad_in_a_row} steps in a row had a NaN/Inf loss or gradient; stopping. Lower "
                            "trainer.lr, check the data, or raise trainer.max_consecutive_bad_steps")

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        return {"step": self.step, **self.source.state(), "skipped_total": self.skipped_total,
                "bad_in_a_row": self.bad_in_a_row}

    def save(self) -> None:
        """Every rank calls this (shards and RNG states are gathered); rank 0 writes."""
        ckpt.save_checkpoint(self.run_dir, self.step, model=self.model, optimizer=self.optimizer,
                             scheduler=self.scheduler, state=self._state(), keep_last=self.cfg.trainer.keep_last,
                             parallel=self.parallel, processor=self.processor,
                             processor_source=self.cfg.model.name_or_path)

    def _resume_path(self) -> Path | None:
        resume = self.cfg.trainer.resume
        if not resume:
            return None
        path = ckpt.latest_checkpoint(self.run_dir) if resume == "auto" else Path(resume)
        if path is None:
            log.info("no checkpoint in %s; starting from scratch", self.run_dir)
        return path

    def maybe_resume(self) -> None:
        """Optimizer, scheduler, RNG and data position of the checkpoint whose weights __init__ loaded."""
        path = self.resume_from
        if path is None:
            return
        state = ckpt.load_training_state(path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                                         parallel=self.parallel)
        self.step = int(state["step"])
        self.source.load_state(state)
        self.skipped_total = int(state.get("skipped_total", 0))
        self.bad_in_a_row = int(state.get("bad_in_a_row", 0))
        log.info("resumed from %s at step %d", path, self.step)

    # ------------------------------------------------------------------ loop
    def train(self) -> dict[str, Any]:
        cfg = self.cfg
        save_config(cfg, self.run_dir / "config.yaml")
        self.maybe_resume()
        self.sync_rollout_weights()  # the engine starts from the model files; a resumed run has moved on
        main = self.accelerator.is_main_process
        logger = MetricsLogger(self.run_dir, tensorboard=cfg.logging.tensorboard, wandb=cfg.logging.wandb,
                               wandb_project=cfg.logging.wandb_project, config=config_to_dict(cfg),
                               resume_step=self.step) if main else None
        bar = tqdm(total=cfg.trainer.max_steps, initial=self.step, desc="rl", unit="step",
                   disable=not (cfg.logging.progress_bar and self.accelerator.is_main_process))
        t0 = time.perf_counter()
        try:
            while self.step < cfg.trainer.max_steps:
                metrics = self.train_step()
                self.step += 1
                if cfg.trainer.eval_every and self.eval_records and self.step % cfg.trainer.eval_every == 0:
                    with self.source.generation_weights(self.model):
                        evaluation = run_eval(self.unwrapped, self.processor, self.eval_records, cfg, desc="eval",
                                              backend=self.source.backend, parallel=self.parallel)
                    metrics["eval/accuracy"] = float(evaluation["accuracy"])
                if logger is not None:
                    logger.log(self.step, metrics)
                check_rollout_mismatch(metrics, cfg.algo.max_rollout_mismatch, self.step)  # same on every rank
                bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", acc=f"{metrics['accuracy']:.3f}",
                                s=f"{metrics['time/step']:.2f}")
                bar.update(1)
                if cfg.trainer.save_every and self.step % cfg.trainer.save_every == 0:
                    self.save()
        finally:
            bar.close()
            if logger is not None:
                logger.close()
            if self.rollout_log is not None:
                self.rollout_log.close()
        if not (cfg.trainer.save_every and self.step % cfg.trainer.save_every == 0):
            self.save()
        return self._finish(time.perf_counter() - t0)

    def _finish(self, seconds: float) -> dict[str, Any]:
        if not self.accelerator.is_main_process:
            return {}
        history = read_metrics(self.run_dir / "metrics.jsonl")
        summary = summarize_run(history)
        summary.update({"steps": self.step, "skipped_steps": self.skipped_total, "algo": self.cfg.algo.name,
                        "wall_seconds_this_run": seconds})
        if self.cfg.logging.plots:
            summary["plots"] = [str(p) for p in plot_metrics(history, self.run_dir / "plots")]
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        print(one_line_summary(summary))
        return summary


def run_training(cfg: Config, dry_run: bool = False) -> dict[str, Any]:
    """Entry point of `mhpo-vl train`; the process group accelerate starts for the run ends with it."""
    with owned_process_group():
        trainer = RLTrainer(dry_run_config(cfg) if dry_run else cfg)
        try:
            summary = trainer.train()
            # No rank stops its engine (under external_launcher that ends the process group) while another
            # rank still works.
            trainer.parallel.barrier()
        finally:
            trainer.source.close()
        return summary
