from pathlib import Path

import pytest
import yaml

from mhpo_vl.config import Config, ConfigError, config_from_dict, load_config, save_config


def test_defaults_validate():
    cfg = config_from_dict({})
    assert isinstance(cfg, Config)
    assert cfg.algo.name == "mhpo"
    assert cfg.rollout.group_size >= 2


def test_yaml_and_dotted_overrides_convert_types(tmp_path: Path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("algo: {name: grpo}\ntrainer: {lr: 1.0e-5, max_steps: 10}\n")
    cfg = load_config(recipe, ["algo.c=2.0", "trainer.lr=1e-6", "trainer.max_steps=3",
                               "model.lora.enabled=true", "rollout.stop_strings=[</answer>, STOP]",
                               "reward.components={accuracy: 1.0}"])
    assert cfg.algo.name == "grpo" and cfg.algo.c == 2.0
    assert cfg.trainer.lr == 1e-6 and isinstance(cfg.trainer.max_steps, int) and cfg.trainer.max_steps == 3
    assert cfg.model.lora.enabled is True
    assert cfg.rollout.stop_strings == ["</answer>", "STOP"]
    assert cfg.reward.components == {"accuracy": 1.0}


def test_yaml_bool_words_reach_string_choices(tmp_path: Path):
    """YAML 1.1 reads a bare `no` as False: a choice named "no" still gets it, from a file and the CLI."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("trainer: {mixed_precision: no}\n")
    assert load_config(recipe).trainer.mixed_precision == "no"
    assert config_from_dict({}, ["trainer.mixed_precision=no"]).trainer.mixed_precision == "no"
    with pytest.raises(ConfigError, match="trainer.mixed_precision: True is not one of"):
        config_from_dict({}, ["trainer.mixed_precision=yes"])  # no choice is a yes-word: still an error


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("algo.cc=1", "unknown key 'algo.cc' (did you mean 'algo.c'?)"),
        ("trainer.lrr=1", "did you mean 'trainer.lr'"),
        ("traner.lr=1", "did you mean 'trainer'"),
        ("model.lora.rr=4", "unknown key 'model.lora.rr'"),
        ("trainer.lr=abc", "trainer.lr: expected a number"),
        ("trainer.max_steps=1.5", "trainer.max_steps: expected an integer"),
        ("rollout.group_size=1", "rollout.group_size: must be >= 2"),
        ("rollout.temperature=0", "rollout.temperature: must be > 0"),
        ("algo.advantage=rlo", "did you mean 'rloo'"),
        ("model.lora.enabled=maybe", "model.lora.enabled: expected true/false"),
        ("trainer.lr", "must look like section.key=value"),
    ],
)
def test_bad_overrides_name_the_key(override: str, needle: str):
    with pytest.raises(ConfigError) as err:
        config_from_dict({}, [override])
    assert needle in str(err.value)


def test_recipe_errors_name_the_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="recipe not found"):
        load_config(tmp_path / "nosuch.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  lr: [1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("trainer:\n  max_step: 3\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: unknown key 'trainer.max_step'"):
        load_config(typo)


def test_mini_batch_must_divide_batch():
    with pytest.raises(ConfigError, match="algo.mini_batch_size"):
        config_from_dict({"rollout": {"prompts_per_step": 4, "group_size": 4}, "algo": {"mini_batch_size": 5}})


def test_save_config_round_trips(tmp_path: Path):
    cfg = config_from_dict({}, ["algo.c=2.5", "trainer.output_dir=somewhere"])
    save_config(cfg, tmp_path / "run" / "config.yaml")
    data = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert data["algo"]["c"] == 2.5
    assert config_from_dict(data) == cfg


def test_loss_hparams_only_set_values():
    cfg = config_from_dict({}, ["algo.c=2.0", "algo.agg=token-mean"])
    assert cfg.algo.loss_hparams() == {"agg": "token-mean", "c": 2.0}


def test_reward_options_parse():
    cfg = config_from_dict({}, ["reward.components={length_penalty: 1.0}",
                                "reward.options={length_penalty: {max_length: 8, buffer: 2}}"])
    assert cfg.reward.options == {"length_penalty": {"max_length": 8, "buffer": 2}}
