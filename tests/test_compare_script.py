"""scripts/compare.py: statistics on hand-made metrics, and one real tiny off-policy run checking compare.json."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compare():
    sys.path.insert(0, str(SCRIPTS))
    try:
        yield _load("compare")
    finally:
        sys.path.remove(str(SCRIPTS))


@pytest.fixture(scope="module")
def stats(compare):
    return sys.modules["compare_stats"]


def test_grad_norm_spikes_jumps_and_nan_steps(stats):
    norms = [1.0, 1.1, 0.9, 1.0, 1.2, 5.0, 1.0, float("nan"), 3.2]
    out = stats.grad_norm_stats([{"grad_norm": v} for v in norms])
    assert out["spikes"] == 2  # 5.0 > 3 x median 1.0 and 3.2 > 3 x median 1.05; NaN (skipped) steps are ignored
    assert out["max"] == 5.0 and out["max_jump"] == pytest.approx(4.0)


def test_run_stats_ratio_entropy_collapse_and_skips(stats):
    metrics = [{"loss/ratio_min": 0.9, "loss/ratio_max": 1.3, "loss/ratio_far_frac": 0.1, "entropy": 0.5,
                "grad_norm": 1.0, "skipped_steps": 0.0, "loss/clip_frac": 0.2},
               {"loss/ratio_min": 0.7, "loss/ratio_max": 1.1, "loss/ratio_far_frac": 0.3, "entropy": 0.01,
                "grad_norm": 1.0, "skipped_steps": 2.0, "loss/clip_frac": 0.4}]
    run = stats.run_stats(metrics, {"accuracy": 0.5, "greedy_accuracy": 0.6, "n": 10})
    assert run["ratio"] == {"min": 0.7, "max": 1.3, "far_frac": pytest.approx(0.2)}
    assert run["entropy_final"] == pytest.approx(0.255) and not run["collapsed"]
    assert run["skipped_steps"] == 2 and run["weights"]["clip_frac"] == pytest.approx(0.3)
    assert run["weights"]["hazard_weight_mean"] is None
    low = stats.run_stats([{**m, "entropy": 0.01} for m in metrics], {"accuracy": 0, "greedy_accuracy": 0, "n": 1})
    assert low["collapsed"]
    # entropy well above the floor, but one answer per prompt on (nearly) every held-out prompt: collapsed
    single = stats.run_stats(metrics, {"accuracy": 0.5, "greedy_accuracy": 0.6, "n": 10, "single_answer_share": 0.97})
    assert single["collapsed"] and single["single_answer_share"] == 0.97
    diverse = stats.run_stats(metrics, {"accuracy": 0.5, "greedy_accuracy": 0.6, "n": 10, "single_answer_share": 0.6})
    assert not diverse["collapsed"]


def test_single_answer_share_groups_by_prompt(stats):
    def sample(pid, extracted):
        return {"id": pid, "extracted": extracted, "response": str(extracted), "correct": False}
    samples = [sample("a", "red"), sample("a", " red"), sample("b", "red"), sample("b", "blue"),
               sample("c", None), sample("c", None), sample("d", "circle"), sample("e", None), sample("e", "x")]
    # a: one answer (whitespace ignored); b: two; c: no answer twice = one value; d: one sample, left out; e: two
    assert stats.single_answer_share(samples) == pytest.approx(2 / 4)
    assert math.isnan(stats.single_answer_share([sample("d", "circle")]))
    assert stats.is_collapsed(1.0, 0.95) and not stats.is_collapsed(1.0, 0.94)
    assert stats.is_collapsed(0.01, 0.0) and stats.is_collapsed(float("nan"), float("nan"))
    assert not stats.is_collapsed(1.0, float("nan"))


def test_collapse_detects_one_answer_per_prompt_on_a_real_model(stats, tiny_model_dir):
    """A real tiny model's samples: greedy (deterministic) decoding gives one answer per prompt and counts
    as collapsed; sampling at T=1 from the untrained model gives varied answers and does not."""
    import torch

    from mhpo_vl.config import ModelConfig
    from mhpo_vl.evaluation import evaluate
    from mhpo_vl.models import load_policy, load_processor

    cfg = ModelConfig(name_or_path=str(tiny_model_dir("qwen2")))
    model, processor = load_policy(cfg).eval(), load_processor(cfg)
    records = [{"id": str(i), "prompt": f"What is {i}+{i}?", "answer": str(2 * i), "answer_type": "math",
                "images": []} for i in range(8)]
    common = dict(n_samples=4, max_new_tokens=4, batch_size=8, progress=False)
    greedy, _ = evaluate(model, processor, records, temperature=0.0, **common)
    assert stats.single_answer_share(greedy) == 1.0 and stats.is_collapsed(1.0, stats.single_answer_share(greedy))
    torch.manual_seed(0)
    sampled, _ = evaluate(model, processor, records, temperature=1.0, **common)
    share = stats.single_answer_share(sampled)
    assert share < stats.SINGLE_ANSWER_SHARE and not stats.is_collapsed(1.0, share)


def test_summary_and_paired_differences(stats):
    def run(loss, seed, acc):
        return {"loss": loss, "seed": seed, "eval": {"accuracy": acc, "greedy_accuracy": acc, "n": 4},
                "grad_norm": {"std": 0, "max": 0, "max_jump": 0, "spikes": 0},
                "ratio": {"min": 1, "max": 1, "far_frac": 0}, "entropy_final": 1.0, "single_answer_share": 0.5,
                "collapsed": False,
                "skipped_steps": 0}
    runs = [run("mhpo", 0, 0.6), run("mhpo", 1, 0.8), run("grpo", 0, 0.5), run("grpo", 1, 0.5)]
    summary = stats.summarize(runs)
    assert summary["mhpo"]["accuracy"] == {"mean": pytest.approx(0.7), "sd": pytest.approx(0.1)}
    diff = stats.paired_differences(runs)
    assert list(diff) == ["grpo"] and diff["grpo"]["accuracy"]["mean"] == pytest.approx(0.2)
    assert diff["grpo"]["accuracy"]["n"] == 2


@pytest.mark.parametrize(("diffs", "exceeds"), [
    ([0.1, 0.11, 0.09], True),  # t = 0.1 / (0.01 / sqrt 3) = 17 > 4.30
    ([0.1, -0.1, 0.05], False),
    ([0.02, 0.04], False),  # t = 3 < 12.71 with one degree of freedom
    ([0.3], False),  # one seed: no noise estimate, never "exceeds"
    ([0.0, 0.0, 0.0], False),
    ([0.05, 0.05, 0.05], True),
])
def test_paired_difference_against_seed_noise(stats, diffs, exceeds):
    assert stats.exceeds_noise({**stats.mean_sd(diffs), "n": len(diffs)}) is exceeds


def test_tables_mark_differences_beyond_noise(stats):
    def run(loss, seed, acc, std):
        return {"loss": loss, "seed": seed, "eval": {"accuracy": acc, "greedy_accuracy": acc, "n": 4},
                "grad_norm": {"std": std, "max": 0, "max_jump": 0, "spikes": 0}}
    runs = [run("mhpo", s, 0.6 + 0.01 * s, 0.1) for s in range(3)]
    runs += [run("grpo", s, [0.5, 0.7, 0.55][s], 0.4 + 0.01 * s) for s in range(3)]
    summary_table, diff_table = stats.tables({"summary": stats.summarize(runs), "runs": runs},
                                             ("accuracy", "grad_norm_std", "ratio_max"))
    assert "| mhpo | 0.610 ± 0.008 | 0.100 ± 0.000 | nan ± nan |" in summary_table  # ratio_max absent: NaN
    row = next(line for line in diff_table.splitlines() if line.startswith("| grpo"))
    accuracy, grad_std = row.split(" | ")[1:3]
    assert not accuracy.endswith("*") and grad_std.endswith("*")
    for r in runs:
        r["weights"] = {"clip_frac": 0.1, "hazard_weight_mean": None} if r["loss"] == "grpo" else {"hazard_weight_mean": 0.25}
    weights = stats.weights_table(runs)
    assert "| mhpo | – | – | 0.250 ± 0.000 | – |" in weights and "| grpo | 0.100 ± 0.000 | – | – | – |" in weights


def test_missing_smollm2_recipe_is_one_clear_line(compare, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(compare.RECIPES, "smollm2", tmp_path / "recipes" / "absent.yaml")
    monkeypatch.setattr(compare.demo, "ROOT", tmp_path)
    assert compare.main(["--model", "smollm2", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "recipes/absent.yaml" in err and "does not exist" in err


def test_unknown_loss_is_rejected(compare):
    with pytest.raises(SystemExit):
        compare.parse_args(["--losses", "mhpo,grpoo"])


def test_tiny_off_policy_run_writes_the_compare_json_schema(compare, stats, tmp_path, capsys):
    """2 losses x 1 seed x 3 steps (~1-2 min): 40 SFT steps give the rollouts some reward variance."""
    out = tmp_path / "cmp"
    code = compare.main(["--regime", "off_policy", "--losses", "mhpo,grpo", "--seeds", "1", "--steps", "3",
                         "--n-train", "48", "--n-test", "8", "--image-size", "56", "--sft-steps", "40",
                         "--lr-scale", "10", "--out", str(out), "rollout.prompts_per_step=4",
                         "rollout.group_size=4", "sft.batch_size=8", "rollout.eval_batch_size=8"])
    assert code == 0
    result = json.loads((out / "compare.json").read_text())
    assert result["regime"] == "off_policy" and result["settings"]["updates_per_batch"] == 4
    assert result["settings"]["complete"] is True
    assert [(r["loss"], r["seed"]) for r in result["runs"]] == [("mhpo", 0), ("grpo", 0)]
    for run in result["runs"]:
        assert set(run["eval"]) == {"accuracy", "greedy_accuracy", "n"} and run["eval"]["n"] == 8
        assert set(run["grad_norm"]) == {"std", "max", "max_jump", "spikes"}
        assert set(run["ratio"]) == {"min", "max", "far_frac"}
        assert isinstance(run["collapsed"], bool) and isinstance(run["skipped_steps"], int)
        assert 0.0 <= run["single_answer_share"] <= 1.0
        numbers = [*run["eval"].values(), *run["grad_norm"].values(), *run["ratio"].values(), run["entropy_final"]]
        assert all(math.isfinite(v) for v in numbers)
        # later mini-batches train on samples of the policy before the first step: the ratio leaves 1
        assert run["ratio"]["max"] > 1.0 and run["ratio"]["min"] < 1.0
    assert set(result["summary"]) == {"mhpo", "grpo"}
    assert set(result["summary"]["mhpo"]["accuracy"]) == {"mean", "sd"}
    warm = result["settings"]["warm_start"]["0"]  # the model both runs started from, evaluated the same way
    assert set(warm) == {"accuracy", "greedy_accuracy", "n", "single_answer_share"} and warm["n"] == 8
    assert (out / "seed_0" / "warm_start_eval_n8.json").is_file()
    report = (out / "report.md").read_text()
    assert "MHPO minus each baseline" in report and "Warm start before RL" in report
    for name in ("accuracy.png", "grad_norm.png", "ratio.png", "entropy.png"):
        assert (out / name).stat().st_size > 0
    capsys.readouterr()
    assert stats.main([str(out), "--columns", "accuracy,ratio_max"]) == 0  # the README's tables
    printed = capsys.readouterr().out
    assert "| loss | accuracy | ratio_max |" in printed and "| baseline | accuracy | ratio_max |" in printed
    assert "| mhpo | – | " in printed  # the weights table: MHPO reports no clip fraction
