"""SFT warm start (`mhpo-vl sft`): cross-entropy on the answer tokens only, same data and collator as RL."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import torch
from tqdm.auto import tqdm

from mhpo_vl.config import Config, save_config
from mhpo_vl.data import PromptCollator
from mhpo_vl.models import load_policy, load_processor
from mhpo_vl.models.processor import save_processor
from mhpo_vl.trainer.batching import PromptSampler, require_even_split
from mhpo_vl.trainer.metrics import MetricsLogger
from mhpo_vl.trainer.setup import (
    ensure_dir,
    load_train_data,
    make_accelerator,
    make_optimizer,
    make_scheduler,
    owned_process_group,
    seed_everything,
)

log = logging.getLogger(__name__)


def run_sft(cfg: Config) -> dict[str, Any]:
    """Train on ``sft.target_template`` answers for ``sft.max_steps`` and save a loadable model directory;
    the process group accelerate starts for the run ends with it."""
    with owned_process_group():
        return _sft(cfg)


def _sft(cfg: Config) -> dict[str, Any]:
    s = cfg.sft
    accelerator = make_accelerator(cfg.trainer.mixed_precision)
    main = accelerator.is_main_process  # the only rank that writes files
    require_even_split(s.batch_size, accelerator.num_processes, "sft.batch_size")
    seed_everything(cfg.trainer.seed)
    out = ensure_dir(s.output_dir)
    if main:
        save_config(cfg, out / "config.yaml")
    dataset = load_train_data(cfg)
    processor = load_processor(cfg.model)
    collator = PromptCollator(processor, template=cfg.data.prompt_template, system_prompt=cfg.data.system_prompt,
                              min_pixels=cfg.model.min_pixels, max_pixels=cfg.model.max_pixels,
                              max_prompt_tokens=cfg.data.max_prompt_tokens)
    model = load_policy(cfg.model)
    optimizer, params = make_optimizer(model, s.lr)
    scheduler = make_scheduler(optimizer, "cosine", s.warmup_steps, s.max_steps)
    # not prepared: accelerate's wrapper would step the schedule once per process at every step
    model, optimizer = accelerator.prepare(model, optimizer)
    sampler = PromptSampler(len(dataset), cfg.trainer.seed, cfg.data.shuffle, accelerator.process_index,
                            accelerator.num_processes)
    logger = MetricsLogger(out) if main else None
    bar = tqdm(total=s.max_steps, desc="sft", unit="step", disable=not (cfg.logging.progress_bar and main))
    model.train()
    t0 = time.perf_counter()
    loss_value = float("nan")
    for step in range(1, s.max_steps + 1):
        records = [dataset[i] for i in sampler.take(s.batch_size)]
        batch = {k: v.to(accelerator.device) for k, v in collator.sft_batch(records, s.target_template).items()}
        with accelerator.autocast():
            loss = model(**batch, use_cache=False).loss
        optimizer.zero_grad(set_to_none=True)
        mean_loss = accelerator.reduce(loss.detach(), reduction="mean")  # NaN on any rank: all ranks skip
        if not torch.isfinite(mean_loss):
            log.warning("step %d: non-finite SFT loss, skipped", step)
            continue
        accelerator.backward(loss)
        norm = torch.nn.utils.clip_grad_norm_(params, s.grad_clip if s.grad_clip > 0 else float("inf"))
        if torch.isfinite(norm):
            optimizer.step()
        scheduler.step()
        loss_value = mean_loss.item()
        if logger is not None:
            logger.log(step, {"loss": loss_value, "grad_norm": float(norm), "lr": scheduler.get_last_lr()[0]})
        bar.set_postfix(loss=f"{loss_value:.3f}")
        bar.update(1)
    bar.close()
    summary = {"steps": s.max_steps, "final_loss": loss_value, "seconds": time.perf_counter() - t0,
               "output_dir": str(out)}
    if main:
        logger.close()
        accelerator.unwrap_model(model).save_pretrained(out)
        save_processor(processor, out, cfg.model.name_or_path)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"sft: {s.max_steps} steps, final loss {loss_value:.4f}, model saved to {out}")
    return summary

