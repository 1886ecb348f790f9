"""Shared fixtures: tiny offline models of each architecture, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory):
    """Factory: ``tiny_model_dir("qwen2_5_vl") -> Path`` of a saved tiny model (built once per arch)."""
    from mhpo_vl.models.tiny import build_tiny_model

    cache: dict[str, Path] = {}

    def build(arch: str = "qwen2_5_vl") -> Path:
        if arch not in cache:
            cache[arch] = build_tiny_model(arch, tmp_path_factory.mktemp(f"tiny_{arch}"), seed=0)
        return cache[arch]

    return build
