"""Logged rollouts: every ``logging.rollouts_every`` steps, the first ``logging.rollouts_per_step`` prompts
of the batch with all their G responses go to ``RUN_DIR/rollouts/step_N.jsonl`` (one line per prompt).

The training thread only picks rows and clones a few small tensors (on their device); a background
thread moves them to the CPU, computes the per-token weights, decodes token strings, copies image
thumbnails into ``rollouts/images/`` and writes the file atomically. Under several processes only
rank 0 logs (its own share of the prompts). A line::

    {"schema": 1, "step", "id", "prompt", "answer", "answer_type", "images": [{"path", "file"} | {"path", "error"}],
     "responses": [{"index", "text", "tokens": [str], "length", "truncated", "reward", "components": {name: v},
                    "advantage", "correct", "logp": [..], "log_ratio": [..], "weight": [..], "entropy": [..]}]}

Per-token lists have ``length`` entries (the response tokens, EOS included) and come from the last
forward pass the update made over that response: log-prob, log r = logp - old logp, the loss's applied
weight (see :mod:`mhpo_vl.algos.weights`) and entropy. ``rollouts/meta.json`` names the algorithm and
what its weight means.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mhpo_vl.algos import WEIGHT_KINDS, token_weights
from mhpo_vl.evaluation import CORRECT_THRESHOLD
from mhpo_vl.viewer.images import save_thumbnail

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
ROLLOUTS_DIR = "rollouts"
IMAGES_DIR = "images"
TOKEN_FIELDS = ("logp", "log_ratio", "weight", "entropy")
_DIGITS = 4  # per-token values are rounded to 4 decimals: enough to colour, small on disk


def step_file(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / ROLLOUTS_DIR / f"step_{step}.jsonl"


class TokenRecorder:
    """``token_sink`` for :func:`mhpo_vl.trainer.update.policy_update`: keeps detached clones of the
    chosen rows' log-probs and entropies (N_log, T); a later call for a row (a later PPO epoch) wins."""

    def __init__(self, step: int, rows: list[int]) -> None:
        self.step = step
        self.rows = rows
        self.logp: dict[int, torch.Tensor] = {}
        self.entropy: dict[int, torch.Tensor] = {}
        self.seconds = 0.0  # time spent in the training thread

    def __call__(self, rows: slice, logp: torch.Tensor, entropy: torch.Tensor | None) -> None:
        t0 = time.perf_counter()
        for row in self.rows:
            if rows.start <= row < rows.stop:
                self.logp[row] = logp[row - rows.start].detach().clone()
                if entropy is not None:
                    self.entropy[row] = entropy[row - rows.start].detach().clone()
        self.seconds += time.perf_counter() - t0


@dataclass
class _Job:
    """Everything the writer needs for one step, detached from the training graph."""

    step: int
    records: list[dict[str, Any]]
    rows: list[int]
    group_size: int
    response_ids: torch.Tensor  # (N_log, T)
    mask: torch.Tensor  # (N_log, T)
    old_logp: torch.Tensor  # (N_log, T)
    advantages: torch.Tensor  # (N_log,) or (N_log, T)
    logp: torch.Tensor | None  # (N_log, T), None when the update skipped them
    entropy: torch.Tensor | None
    texts: list[str]
    truncated: list[bool]
    rewards: list[float]
    components: dict[str, list[float]]
    accuracy: list[float]


class RolloutLogger:
    """Writes logged rollouts off the training thread (see module docstring). ``close()`` flushes."""

    def __init__(self, run_dir: str | Path, *, every: int, per_step: int, tokenizer: Any, algo: str,
                 hparams: dict[str, Any], max_pending: int = 2) -> None:
        self.dir = Path(run_dir) / ROLLOUTS_DIR
        self.every, self.per_step = every, per_step
        self.tokenizer, self.algo = tokenizer, algo
        self.hparams = {k: v for k, v in hparams.items() if k not in ("agg", "max_len")}
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_pending)  # back-pressure, never drop
        self._thread: threading.Thread | None = None
        self.written: list[Path] = []
        self.failures = 0
        self.main_seconds = 0.0  # training-thread time (recorder + submit), for the overhead benchmark
        self.writer_seconds = 0.0  # background-thread time

    def wants(self, step: int) -> bool:
        return self.every > 0 and self.per_step > 0 and step % self.every == 0

    def recorder(self, step: int, rollout: Any) -> TokenRecorder | None:
        """A token sink for ``step``'s update, or None when the step is not logged."""
        if not self.wants(step):
            return None
        g = rollout.group_size
        prompts = min(self.per_step, len(rollout) // g)
        return TokenRecorder(step, list(range(prompts * g)))

    def submit(self, recorder: TokenRecorder, rollout: Any, *, rewards: torch.Tensor,
               components: dict[str, list[float]], accuracy: list[float], advantages: torch.Tensor,
               old_logp: torch.Tensor) -> None:
        """Queue one step's logged rows (cheap: slices and clones; the writer does the rest)."""
        t0 = time.perf_counter()
        rows, g = recorder.rows, rollout.group_size
        index = torch.tensor(rows, dtype=torch.long)

        def take(t: torch.Tensor) -> torch.Tensor:
            return t.detach().index_select(0, index.to(t.device))

        complete = rows and all(r in recorder.logp for r in rows)
        job = _Job(
            step=recorder.step, records=[rollout.records[r // g] for r in rows[::g]], rows=rows, group_size=g,
            response_ids=take(rollout.response_ids), mask=take(rollout.response_mask), old_logp=take(old_logp),
            advantages=take(advantages),
            logp=torch.stack([recorder.logp[r] for r in rows]) if complete else None,
            entropy=(torch.stack([recorder.entropy[r] for r in rows])
                     if complete and all(r in recorder.entropy for r in rows) else None),
            texts=[rollout.texts[r] for r in rows], truncated=[bool(rollout.truncated[r]) for r in rows],
            rewards=[float(rewards[r]) for r in rows], components={k: [float(v[r]) for r in rows]
                                                                   for k, v in components.items()},
            accuracy=[float(accuracy[r]) for r in rows],
        )
        if self._thread is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            _write_atomic(self.dir / "meta.json", json.dumps({
                "schema": SCHEMA_VERSION, "algo": self.algo, "weight_kind": WEIGHT_KINDS.get(self.algo, "weight"),
                "every": self.every, "per_step": self.per_step, "group_size": g}, indent=2))
            self._thread = threading.Thread(target=self._work, name="rollout-log", daemon=True)
            self._thread.start()
        self._queue.put(job)
        self.main_seconds += recorder.seconds + time.perf_counter() - t0

    def close(self) -> None:
        """Write everything queued, then stop the writer."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    # ------------------------------------------------------------------ writer thread
    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            t0 = time.perf_counter()
            try:
                path = step_file(self.dir.parent, job.step)
                _write_atomic(path, "".join(json.dumps(line, ensure_ascii=False, allow_nan=False) + "\n"
                                            for line in self._lines(job)))
                self.written.append(path)
            except Exception as exc:  # a logging failure must never stop training
                self.failures += 1
                log.warning("rollout log of step %d not written: %s: %s", job.step, type(exc).__name__, exc)
            self.writer_seconds += time.perf_counter() - t0

    def _lines(self, job: _Job) -> list[dict[str, Any]]:
        mask = job.mask.cpu().bool()
        old, adv = job.old_logp.float().cpu(), job.advantages.float().cpu()
        per_token: dict[str, torch.Tensor] = {}
        if job.logp is not None:
            logp = job.logp.float().cpu()
            per_token = {"logp": logp, "log_ratio": torch.where(mask, logp - old, 0.0),
                         "weight": token_weights(self.algo, logp, old, adv, mask, **self.hparams)}
            if job.entropy is not None:
                per_token["entropy"] = job.entropy.float().cpu()
        ids = job.response_ids.cpu()
        images_dir = self.dir / IMAGES_DIR
        lines = []
        for p, record in enumerate(job.records):
            responses = []
            for j in range(job.group_size):
                k = p * job.group_size + j
                n = int(mask[k].sum())
                row_adv = adv[k] if adv.dim() == 1 else adv[k][mask[k]].mean()
                response = {
                    "index": j, "text": job.texts[k], "tokens": token_strings(self.tokenizer, ids[k, :n].tolist()),
                    "length": n, "truncated": job.truncated[k], "reward": _num(job.rewards[k]),
                    "components": {name: _num(v[k]) for name, v in job.components.items()},
                    "advantage": _num(float(row_adv)), "correct": job.accuracy[k] >= CORRECT_THRESHOLD,
                }
                response.update({name: _nums(t[k, :n]) for name, t in per_token.items()})
                responses.append(response)
            root = record.get("image_root")
            images = []
            for entry in record.get("images") or []:
                shown = entry if isinstance(entry, str) else "(embedded image)"
                images.append({"path": shown, **save_thumbnail(entry, images_dir, image_root=root,
                                                               roots=[Path(root)] if root else [])})
            lines.append({"schema": SCHEMA_VERSION, "step": job.step, "id": str(record.get("id")),
                          "prompt": str(record.get("prompt", "")), "answer": str(record.get("answer", "")),
                          "answer_type": record.get("answer_type"), "images": images, "responses": responses})
        return lines


def token_strings(tokenizer: Any, ids: list[int], window: int = 6) -> list[str]:
    """The text each token adds, special tokens included; joined they give the decoded response.

    Decoding token by token breaks multi-byte characters and some tokenizers' leading spaces, so each
    piece is the difference of two decodes over a short window; a token that ends inside a character
    gets "" and the character goes to the token that completes it.
    """
    out: list[str] = []
    done = 0  # tokens [0, done) are attributed
    for i in range(len(ids)):
        start = max(0, done - window)
        before = tokenizer.decode(ids[start:done], skip_special_tokens=False) if done > start else ""
        after = tokenizer.decode(ids[start:i + 1], skip_special_tokens=False)
        if after.endswith("\ufffd") and i + 1 < len(ids):
            out.append("")
            continue
        out.append(after[len(before):] if after.startswith(before) else after)
        done = i + 1
    return out


def _num(x: float) -> float | None:
    return round(x, _DIGITS) + 0.0 if math.isfinite(x) else None  # + 0.0: no "-0.0"


def _nums(t: torch.Tensor) -> list[float | None]:
    return [_num(x) for x in t.tolist()]


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def rollout_logger_for(cfg: Any, run_dir: Path, tokenizer: Any, hparams: dict[str, Any],
                       is_main: bool) -> RolloutLogger | None:
    """The run's logger, or None when logging is off or this is not rank 0."""
    every, per_step = cfg.logging.rollouts_every, cfg.logging.rollouts_per_step
    if not is_main or every <= 0 or per_step <= 0:
        return None
    return RolloutLogger(run_dir, every=every, per_step=per_step, tokenizer=tokenizer, algo=cfg.algo.name,
                         hparams=hparams)
