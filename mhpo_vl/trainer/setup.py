"""Shared construction for the RL and SFT loops: accelerator, seed, optimizer, schedule, data, eval."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import get_scheduler

from mhpo_vl.config import Config
from mhpo_vl.data import PromptDataset
from mhpo_vl.errors import UserError


def make_accelerator(mixed_precision: str) -> Any:
    """An accelerate Accelerator (one process unless launched with `accelerate launch`)."""
    from accelerate import Accelerator

    if mixed_precision == "auto":
        mixed_precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return Accelerator(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available())


@contextlib.contextmanager
def owned_process_group() -> Iterator[None]:
    """Ends, on leaving the block, the process group that accelerate started inside it (several processes).

    Left to interpreter exit, gloo's threads can abort a rank (SIGABRT, "terminate called without an active
    exception"). On success the ranks meet at a barrier first, so none tears down while rank 0 still writes
    its summary; on an error the group ends at once (the other ranks may never reach a barrier). A group
    that existed before the block belongs to its creator and is left alone. accelerate's shared state is
    reset with it, so a later run in the same process starts a fresh group.
    """
    import torch.distributed as dist

    owned = dist.is_available() and not dist.is_initialized()
    ok = False
    try:
        yield
        ok = True
    finally:
        if owned:  # a vLLM engine's shutdown may already have ended the group (see VLLMRolloutBackend.close)
            from accelerate.state import AcceleratorState

            try:
                if ok and dist.is_initialized():
                    dist.barrier()
            finally:
                if dist.is_initialized():
                    dist.destroy_process_group()
                AcceleratorState._reset_state(reset_partial_state=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.0,
                   betas: tuple[float, float] = (0.9, 0.999)) -> tuple[torch.optim.Optimizer, list]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise UserError("the model has no trainable parameters (check model.lora / freeze settings)")
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas), params


def make_scheduler(optimizer: torch.optim.Optimizer, kind: str, warmup: int, total: int, min_lr_ratio: float = 0.0):
    """Warmup then cosine/linear/constant, stepped once per trainer step."""
    if kind == "cosine" and min_lr_ratio > 0:
        return get_scheduler("cosine_with_min_lr", optimizer, num_warmup_steps=warmup, num_training_steps=total,
                             scheduler_specific_kwargs={"min_lr_rate": min_lr_ratio})
    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[kind]
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)


def load_train_data(cfg: Config) -> PromptDataset:
    if not cfg.data.train_dir:
        raise UserError("data.train_dir is empty: point it at a directory prepared with `python -m data_prep`")
    return PromptDataset(cfg.data.train_dir, cfg.data.train_split)


def load_eval_records(cfg: Config) -> list[dict]:
    """Held-out records for periodic evaluation (empty when data.eval_dir is unset)."""
    if not cfg.data.eval_dir:
        return []
    records = PromptDataset(cfg.data.eval_dir, cfg.data.eval_split).records
    return records[: cfg.trainer.eval_limit] if cfg.trainer.eval_limit else records


def run_eval(model: torch.nn.Module, processor: Any, records: list[dict], cfg: Config, desc: str = "eval",
             max_new_tokens: int | None = None, backend: Any = None, parallel: Any = None) -> dict[str, Any]:
    """Greedy (or eval_temperature) evaluation with the same code as `python -m eval`, on ``backend``
    (the trainer's rollout backend; default HF generate).

    With ``parallel`` (the run's :class:`~mhpo_vl.trainer.parallel.Parallel`) and several processes, every
    rank must call this: each evaluates its share of ``records`` (:func:`~mhpo_vl.evaluation.rank_share`,
    equal sizes, so generation collectives line up), the samples are gathered, and every rank returns the
    same metrics over all records (``n`` = ``len(records)``). Under FSDP2 the caller holds the gathered
    weights (``Parallel.gathered``) around the call on every rank.
    """
    from mhpo_vl.evaluation import evaluate, rank_share, summarize

    rank, world = (parallel.rank, parallel.world) if parallel is not None else (0, 1)
    share, n_real = rank_share(records, rank, world) if world > 1 else (records, len(records))
    samples, metrics = evaluate(
        model, processor, share, n_samples=1, temperature=cfg.rollout.eval_temperature,
        max_new_tokens=max_new_tokens or cfg.rollout.max_new_tokens, batch_size=cfg.rollout.eval_batch_size,
        template=cfg.data.prompt_template, system_prompt=cfg.data.system_prompt,
        max_prompt_tokens=cfg.data.max_prompt_tokens, stop_strings=cfg.rollout.stop_strings, desc=desc,
        backend=backend,
        extract=cfg.reward.extract,
        progress=rank == 0,
    )
    if world == 1:
        return metrics
    real = {r["id"] for r in share[:n_real]}
    by_id = {s["id"]: s for part in parallel.gather_objects([s for s in samples if s["id"] in real]) for s in part}
    return summarize([by_id[r["id"]] for r in records], {r["id"]: r for r in records})


def ensure_dir(path: str | Path) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path
