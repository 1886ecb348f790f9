"""Per-step metrics: ``metrics.jsonl`` (+ optional tensorboard/wandb), cross-process reduction, run summary.

``metrics.jsonl`` holds one JSON object per line, ``{"step": N, "<key>": value, ...}``. Non-finite floats
are written as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (Python's own spellings), so
every line is strict JSON; :func:`read_metrics` turns them back into floats. Missing values may be
``null`` (read back as ``None``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from mhpo_vl.errors import UserError

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
_NONFINITE_TO_TEXT = {math.inf: "Infinity", -math.inf: "-Infinity"}
_TEXT_TO_FLOAT = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_TRACKING_HINT = "pip install mhpo-vl[tracking]"


def encode_value(value: Any) -> Any:
    """A JSON-safe form of one metric value: finite floats/ints/bools/None as is, NaN/inf as strings."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, int):
        return value
    value = float(value)
    if math.isnan(value):
        return "NaN"
    return _NONFINITE_TO_TEXT.get(value, value)


def decode_value(value: Any) -> Any:
    """Inverse of :func:`encode_value`."""
    if isinstance(value, str) and value in _TEXT_TO_FLOAT:
        return _TEXT_TO_FLOAT[value]
    return value


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file, non-finite strings decoded back to floats.

    A malformed final line without a newline (a write cut short by a kill) is skipped with a warning; a
    malformed line elsewhere raises :class:`UserError` naming ``file:line``.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"metrics file not found: {path}") from None
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if number == len(lines) and not text.endswith("\n"):
                log.warning("%s:%d: skipping a truncated last line", path, number)
                continue
            raise UserError(f"{path}:{number}: malformed metrics line ({exc})") from None
        records.append({k: decode_value(v) for k, v in record.items()})
    return records


class MetricsLogger:
    """Appends one line per step to ``run_dir/metrics.jsonl`` and mirrors scalars to tensorboard/wandb.

    Create it on the main process only (other ranks would rewrite the same file). ``resume_step=N``
    keeps only the lines with ``step <= N`` of an existing file, so a resumed run logs each step once
    (``resume_step=0`` starts a fresh run's file empty); ``None`` leaves an existing file as it is, for
    the caller to :meth:`truncate_after`.
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        tensorboard: bool = False,
        wandb: bool = False,
        wandb_project: str = "mhpo-vl",
        config: dict | None = None,
        resume_step: int | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / METRICS_FILE
        self._file = None
        self._tb = _tensorboard_writer(self.run_dir) if tensorboard else None
        self._wandb = _wandb_run(self.run_dir, wandb_project, config, resume_step) if wandb else None
        if resume_step is not None:
            self.truncate_after(resume_step)
        self._file = self.path.open("a", encoding="utf-8")

    def truncate_after(self, step: int) -> None:
        """Drop the lines with ``"step" > step`` (and a cut-short last line); atomic rewrite."""
        reopen = self._file is not None and not self._file.closed
        if reopen:
            self._file.close()
        if self.path.exists():
            kept = [r for r in read_metrics(self.path) if int(r.get("step", -1)) <= step]
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text("".join(_dumps(r) + "\n" for r in kept), encoding="utf-8")
            os.replace(tmp, self.path)
        if reopen:
            self._file = self.path.open("a", encoding="utf-8")

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Append ``{"step": step, **metrics}`` as one line and flush it."""
        self._file.write(_dumps({"step": int(step), **metrics}) + "\n")
        self._file.flush()
        numeric = {k: float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        if self._tb is not None:
            for key, value in numeric.items():
                self._tb.add_scalar(key, value, global_step=step)
        if self._wandb is not None:
            self._wandb.log(numeric, step=step)

    def close(self) -> None:
        """Flush and close the file and trackers (idempotent)."""
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _dumps(record: Mapping[str, Any]) -> str:
    return json.dumps({str(k): encode_value(v) for k, v in record.items()}, allow_nan=False)


def _tensorboard_writer(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(f"logging.tensorboard is on but tensorboard is not installed: {_TRACKING_HINT}") from None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def _wandb_run(run_dir: Path, project: str, config: dict | None, resume_step: int | None) -> Any:
    try:
        import wandb
    except ImportError:
        raise UserError(f"logging.wandb is on but wandb is not installed: {_TRACKING_HINT}") from None
    return wandb.init(project=project, config=config, dir=str(run_dir), name=run_dir.name,
                      resume="allow" if resume_step is not None else None)


# ----------------------------------------------------------------------------- reduction


def reduce_op(key: str) -> str:
    """How ``key`` combines across processes: "max" for keys ending in max, "min" for min, else "mean"."""
    if key.endswith("max"):
        return "max"
    if key.endswith("min"):
        return "min"
    return "mean"


def reduce_metrics(values: Mapping[str, torch.Tensor | float], accelerator: Any = None) -> dict[str, float]:
    """Scalar tensors/floats -> floats with one device-to-host sync; averaged over processes if several.

    Every process must pass the same keys. With ``accelerator.num_processes > 1`` the values (stacked
    into one (K,) tensor) are gathered into (P, K) in one collective and reduced per key by
    :func:`reduce_op`.
    """
    keys = sorted(values)
    if not keys:
        return {}
    device = accelerator.device if accelerator is not None else None
    if device is None:
        device = next((v.device for v in values.values() if isinstance(v, torch.Tensor)), torch.device("cpu"))
    parts = []
    for key in keys:
        value = values[key]
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f"metric {key!r} must be a scalar, got shape {tuple(value.shape)}")
            parts.append(value.detach().reshape(()).to(device=device, dtype=torch.float32))
        else:
            parts.append(torch.tensor(float(value), dtype=torch.float32, device=device))
    stacked = torch.stack(parts)  # (K,)
    if accelerator is not None and accelerator.num_processes > 1:
        table = accelerator.gather(stacked).reshape(accelerator.num_processes, len(keys))  # (P, K)
        ops = [reduce_op(k) for k in keys]
        stacked = torch.stack([
            table[:, i].max() if op == "max" else table[:, i].min() if op == "min" else table[:, i].mean()
            for i, op in enumerate(ops)
        ])
    return dict(zip(keys, stacked.tolist()))


# ----------------------------------------------------------------------------- summary


def _series(metrics: Iterable[Mapping[str, Any]], key: str) -> list[float]:
    """Finite float values of ``key`` in step order (missing, null and NaN/inf values left out)."""
    out = []
    for record in metrics:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out.append(float(value))
    return out


def _first_last_mean(values: list[float]) -> dict[str, float]:
    """first/last: means over the first/last tenth of the values (at least 1, at most 10 values)."""
    window = min(10, max(1, len(values) // 10))
    return {"first": statistics.fmean(values[:window]), "last": statistics.fmean(values[-window:]),
            "mean": statistics.fmean(values), "window": window}


def summarize_run(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary of a run's metrics records for ``summary.json``.

    Keys present only when logged: ``reward``, ``accuracy``, ``response_length``, ``eval_accuracy``
    (first/last/mean), ``grad_norm`` (mean/std/max/max_jump = largest step-to-step change),
    ``skipped_steps`` (the last logged value of the running count), ``total_time_s`` (sum of time/step).
    """
    summary: dict[str, Any] = {"steps": len(metrics)}
    steps = [r["step"] for r in metrics if isinstance(r.get("step"), int)]
    if steps:
        summary["last_step"] = max(steps)
    for name, key in (("reward", "reward/mean"), ("accuracy", "accuracy"),
                      ("response_length", "response_length/mean"), ("eval_accuracy", "eval/accuracy")):
        values = _series(metrics, key)
        if values:
            summary[name] = _first_last_mean(values)
    grad = _series(metrics, "grad_norm")
    if grad:
        jumps = [abs(b - a) for a, b in zip(grad, grad[1:])]
        summary["grad_norm"] = {"mean": statistics.fmean(grad), "std": statistics.pstdev(grad),
                                "max": max(grad), "max_jump": max(jumps, default=0.0)}
    skipped = _series(metrics, "skipped_steps")
    if skipped:
        summary["skipped_steps"] = int(skipped[-1])
    times = _series(metrics, "time/step")
    if times:
        summary["total_time_s"] = sum(times)
    return summary


def one_line_summary(summary: Mapping[str, Any]) -> str:
    """E.g. ``"step 100: reward 0.41 -> 0.73, acc 0.40 -> 0.71, grad-norm std 0.12, 0 skipped steps, 312 s"``."""
    parts = []
    for name, label in (("reward", "reward"), ("accuracy", "acc"), ("eval_accuracy", "eval acc")):
        if name in summary:
            parts.append(f"{label} {summary[name]['first']:.2f} -> {summary[name]['last']:.2f}")
    if "grad_norm" in summary:
        parts.append(f"grad-norm std {summary['grad_norm']['std']:.3g}")
    if "skipped_steps" in summary:
        parts.append(f"{summary['skipped_steps']} skipped steps")
    if "total_time_s" in summary:
        parts.append(f"{summary['total_time_s']:.0f} s")
    head = f"step {summary['last_step']}" if "last_step" in summary else f"{summary.get('steps', 0)} steps"
    return f"{head}: " + ", ".join(parts) if parts else head
