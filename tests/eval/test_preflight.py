"""Fast, clear failures of ``mhpo-eval run`` before any data or model loads (model, --lora, the hub)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from eval.__main__ import main
from eval.preflight import check_model_paths
from mhpo_vl.errors import UserError
from tests.eval.fixtures import write_gsm8k


def test_missing_model_path_is_one_line_before_anything_loads(tmp_path):
    out = tmp_path / "X"
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-m", "eval", "run", "--model", "/nonexistent", "--benchmarks", "gsm8k",
                           "--output", str(out)], capture_output=True, text=True, env=env, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "/nonexistent" in lines[0] and "--model" in lines[0]
    assert not out.exists()  # nothing written, no data read


def test_model_and_lora_checks(tmp_path, monkeypatch):
    model = tmp_path / "m"
    model.mkdir()
    with pytest.raises(UserError, match="has no config.json"):
        check_model_paths(str(model))
    (model / "config.json").write_text("{}")
    check_model_paths(str(model))
    with pytest.raises(UserError, match="--lora: adapter folder not found"):
        check_model_paths(str(model), str(tmp_path / "nope"))
    with pytest.raises(UserError, match="--lora: no adapter_config.json"):
        check_model_paths(str(model), str(model))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="not in the HF cache"):
        check_model_paths("someone/not-cached-model")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(UserError, match=r"'someone/not-cached-model' is not a local folder .* unreachable"):
        check_model_paths("someone/not-cached-model")


def test_unreachable_hub_for_data_fails_at_once_with_the_data_dir_hint(tiny_model_dir, tmp_path, monkeypatch,
                                                                        capsys):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    model = tiny_model_dir("qwen2")
    capsys.readouterr()  # building the tiny model prints progress bars
    code = main(["run", "--model", str(model), "--benchmarks", "gsm8k", "--output",
                 str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "unreachable" in err[0] and "--data-dir" in err[0]
    write_gsm8k(tmp_path / "data")  # with a local copy the same command needs no hub
    assert main(["run", "--model", str(model), "--benchmarks", "gsm8k", "--data-dir",
                 str(tmp_path / "data"), "--output", str(tmp_path / "o"), "--limit", "1", "--max-new-tokens", "2",
                 "--no-progress"]) == 0
