"""Which rollout backend and engine settings a config asks for (the engine itself: test_vllm.py)."""

from __future__ import annotations

import pytest

from mhpo_vl.config import ConfigError, config_from_dict
from mhpo_vl.rollout.factory import engine_dtype


def test_engine_dtype_follows_the_trainer_unless_set():
    assert engine_dtype(config_from_dict({}, ["model.dtype=bfloat16"])) == "bfloat16"
    assert engine_dtype(config_from_dict({}, ["rollout.vllm.dtype=bfloat16"])) == "bfloat16"
    assert engine_dtype(config_from_dict({}, ["model.dtype=float32", "rollout.vllm.dtype=float16"])) == "float16"
    assert engine_dtype(config_from_dict({})) == config_from_dict({}).model.dtype


def test_engine_dtype_rejects_unknown_names():
    with pytest.raises(ConfigError, match="rollout.vllm.dtype"):
        config_from_dict({}, ["rollout.vllm.dtype=bf16"])
