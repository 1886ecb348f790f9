import subprocess
import sys
from pathlib import Path

import pytest

from mhpo_vl.cli import main


def test_train_help_lists_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--resume", "--output-dir", "--max-steps", "--dry-run", "KEY=VALUE"):
        assert option in out


def test_missing_recipe_is_one_line_exit_2(capsys):
    assert main(["train", "nosuch.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mhpo-vl: error: recipe not found: nosuch.yaml"]


def test_unknown_override_is_one_line_exit_2(tmp_path: Path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("algo:\n  name: mhpo\n")
    assert main(["show-config", str(recipe), "algo.cc=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'algo.c'" in err[0]


def test_show_config_prints_resolved_yaml(tmp_path: Path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("algo:\n  name: grpo\n")
    assert main(["show-config", str(recipe), "trainer.max_steps=3"]) == 0
    out = capsys.readouterr().out
    assert "name: grpo" in out and "max_steps: 3" in out


def test_python_dash_m_entry_point(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "mhpo_vl", "train", str(tmp_path / "missing.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "recipe not found" in proc.stderr


def test_overrides_may_follow_flags(tmp_path: Path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("algo:\n  name: grpo\n")
    assert main(["show-config", str(recipe), "trainer.max_steps=3"]) == 0
    assert main(["train", str(recipe), "--max-steps", "2", "algo.cc=1"]) == 2
    assert "did you mean 'algo.c'" in capsys.readouterr().err
