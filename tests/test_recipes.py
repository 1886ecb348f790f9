"""Every shipped recipe loads, names a registered loss and resolvable rewards, and dry-runs 2 RL steps."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import tempfile
from pathlib import Path

import pytest

from mhpo_vl.algos import POLICY_LOSSES
from mhpo_vl.cli import main
from mhpo_vl.config import config_to_dict, load_config
from mhpo_vl.rewards import combine
from mhpo_vl.trainer.metrics import read_metrics
from mhpo_vl.trainer.rl import resolve_loss

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
RECIPES = sorted(RECIPES_DIR.glob("*.yaml"))
REAL = [r for r in RECIPES if not r.name.startswith("tiny_")]
TINY_VARIANTS = [r for r in RECIPES if r.name.startswith("tiny_cpu_") and r.name != "tiny_cpu_mhpo.yaml"]
# The default suite dry-runs one VLM MHPO recipe and the text recipe; the slow sweep covers all.
REPRESENTATIVE = ["qwen2_5_vl_3b_lora_mhpo.yaml", "qwen2_5_7b_instruct_math_mhpo.yaml"]


def _loadable(recipe: Path):
    return pytest.param(recipe, id=recipe.name)


def test_recipe_set_is_complete():
    names = {r.name for r in RECIPES}
    assert {"tiny_cpu_mhpo.yaml", "tiny_cpu_grpo.yaml", "tiny_cpu_dapo.yaml", "tiny_cpu_gspo.yaml",
            "qwen2_5_vl_7b_geo3k_mhpo.yaml", "qwen2_5_vl_7b_geo3k_grpo.yaml", "qwen2_5_vl_7b_geo3k_dapo.yaml",
            "qwen2_5_vl_3b_lora_mhpo.yaml", "qwen3_vl_4b_mhpo.yaml", "qwen2_5_7b_instruct_math_mhpo.yaml"} <= names


@pytest.mark.parametrize("recipe", [_loadable(r) for r in RECIPES])
def test_recipe_loads_with_known_loss_and_rewards(recipe):
    cfg = load_config(recipe)  # unknown keys raise
    assert cfg.algo.name in POLICY_LOSSES
    resolve_loss(cfg)  # every algo hyperparameter is one the loss takes
    reward = combine(cfg.reward.components, cfg.reward.options)  # names and options resolve
    assert reward.names == list(cfg.reward.components)


@pytest.mark.parametrize("recipe", REAL, ids=lambda r: r.name)
def test_real_recipe_header_says_hardware_data_time(recipe):
    header = "".join(line for line in recipe.read_text().splitlines(keepends=True) if line.startswith("#"))
    for word in ("Hardware", "Data", "Time", "python -m data_prep", "--dry-run"):
        assert word in header, f"{recipe.name}: header comment lacks {word!r}"


@pytest.mark.parametrize("recipe", TINY_VARIANTS, ids=lambda r: r.name)
def test_tiny_variants_differ_from_the_demo_only_in_algo(recipe):
    base, variant = (config_to_dict(load_config(p)) for p in (RECIPES_DIR / "tiny_cpu_mhpo.yaml", recipe))
    for d in (base, variant):
        d.pop("algo")
        d["trainer"].pop("output_dir")
    assert variant == base
    assert load_config(recipe).trainer.output_dir != load_config(RECIPES_DIR / "tiny_cpu_mhpo.yaml").trainer.output_dir


def _dry_run(recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    load_config(recipe)  # a bad recipe raises here (the CLI would turn it into exit code 2)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the dry run's temp dir lands in tmp_path
    code = main(["train", str(recipe), "logging.progress_bar=false", "logging.plots=false", "--dry-run"])
    assert code == 0
    (metrics,) = tmp_path.glob("mhpo-dry-run-*/run/metrics.jsonl")
    return read_metrics(metrics)


def _check_metrics(lines: list[dict], recipe: Path) -> None:
    assert [m["step"] for m in lines] == [1, 2]
    cfg = load_config(recipe)
    for key in cfg.reward.components:
        assert f"reward/{key}" in lines[0]
    assert all(m["response_length/max"] <= 8 for m in lines)


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_dry_run_representative_recipes(name, tmp_path, monkeypatch):
    recipe = RECIPES_DIR / name
    _check_metrics(_dry_run(recipe, tmp_path, monkeypatch), recipe)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [_loadable(r) for r in RECIPES if r.name not in REPRESENTATIVE])
def test_dry_run_every_recipe(recipe, tmp_path, monkeypatch):
    _check_metrics(_dry_run(recipe, tmp_path, monkeypatch), recipe)


def test_dry_run_keeps_every_algo_and_reward_setting(tmp_path):
    """What the dry run may change in algo is the mini-batch size only; reward is untouched."""
    from mhpo_vl.trainer.dry_run import dry_run_config

    for recipe in REAL:
        cfg = load_config(recipe)
        out = dry_run_config(cfg, tmp_path / recipe.stem, report=lambda _: None)
        assert dataclasses.replace(out.algo, mini_batch_size=cfg.algo.mini_batch_size) == cfg.algo
        assert out.reward == cfg.reward


# ----------------------------------------------------------------------------- attention kernels


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_recipes_default_to_sdpa(recipe):
    """No extra installs flash-attn, so every recipe runs on sdpa; flash attention is an opt-in override."""
    assert load_config(recipe).model.attn_implementation == "sdpa"


def test_flash_attention_is_an_extra():
    text = (RECIPES_DIR.parent / "pyproject.toml").read_text()
    assert re.search(r'^flash-attn = \["flash-attn>=[\d.]+"\]$', text, re.M)


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash-attn is installed here")
def test_flash_attention_without_the_package_is_one_clear_error(tiny_model_dir):
    from mhpo_vl.config import ModelConfig
    from mhpo_vl.errors import UserError
    from mhpo_vl.models import load_policy

    cfg = ModelConfig(name_or_path=str(tiny_model_dir("qwen2_5_vl")), attn_implementation="flash_attention_2")
    with pytest.raises(UserError) as info:
        load_policy(cfg)
    message = str(info.value)
    assert "model.attn_implementation=flash_attention_2" in message and "flash_attn" in message
    assert "sdpa" in message and "\n" not in message
