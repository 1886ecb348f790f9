"""The reward `make gpu-smoke` adds to the task's accuracy (scripts/gpu_smoke.py); standard library only."""

from __future__ import annotations

from typing import Any


def variety(completion: str, reference: str, **fields: Any) -> float:
    """Share of distinct characters in the completion, in [0, 1]. A random model scores 0 on the task's
    accuracy, so every advantage would be 0 and no gradient would flow; this one differs between samples,
    so the update, clipping and optimizer see real gradients."""
    return len(set(completion)) / max(1, len(completion))
