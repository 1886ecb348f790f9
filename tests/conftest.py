"""Shared fixtures and the rules that keep the suite deterministic.

- Hypothesis: the ``ci`` profile (chosen when ``CI`` is set) derandomizes, so CI runs the same examples
  every time; local runs (``dev``) explore new examples. Neither has a deadline (timing is for benchmarks).
  ``HYPOTHESIS_PROFILE=ci|dev`` overrides the choice.
- Every test starts from the same seeds of ``random``, numpy and torch, whatever ran before it.
- Verifier calls get a generous per-call budget, so a loaded machine cannot turn a right answer into a
  timeout; tests of the time bound itself set their own budgets.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

TEST_SEED = 0
#: Per-call verifier budget in tests (production default: 1 s); see the module docstring.
TEST_VERIFIER_TIMEOUT_S = 10.0

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
settings.load_profile(HYPOTHESIS_PROFILE)


def pytest_report_header(config: pytest.Config) -> str:
    how = "same examples every run" if settings.default.derandomize else "random exploration"
    return f"hypothesis profile: {HYPOTHESIS_PROFILE} ({how}); test seed: {TEST_SEED}"


@pytest.fixture(autouse=True)
def _fixed_seeds() -> None:
    """Reseed the global RNGs before every test, so no test depends on which tests ran before it."""
    import torch

    random.seed(TEST_SEED)
    np.random.seed(TEST_SEED)
    torch.manual_seed(TEST_SEED)


@pytest.fixture(autouse=True, scope="session")
def _generous_verifier_budget():
    from mhpo_vl.rewards import configure_pool
    from mhpo_vl.rewards.pool import DEFAULT_TIMEOUT

    configure_pool(timeout=TEST_VERIFIER_TIMEOUT_S)
    yield
    configure_pool(timeout=DEFAULT_TIMEOUT)


@pytest.fixture()
def production_verifier_budget():
    """The shipped per-call verifier budget (1 s), for tests of the time bound itself."""
    from mhpo_vl.rewards import configure_pool
    from mhpo_vl.rewards.pool import DEFAULT_TIMEOUT

    configure_pool(timeout=DEFAULT_TIMEOUT)
    yield DEFAULT_TIMEOUT
    configure_pool(timeout=TEST_VERIFIER_TIMEOUT_S)


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
