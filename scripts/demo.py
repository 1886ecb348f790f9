"""`make demo`: a tiny Qwen2.5-VL-architecture model learns easy-vqa with MHPO on a CPU, end to end.

Phases (per seed): synthetic easy-vqa data (train split + held-out test split on disjoint images) ->
tiny random model -> SFT warm start (answer format) -> eval on the held-out split -> MHPO RL -> eval of
the FINAL RL checkpoint -> SFT-continuation baseline from the same warm start, given the RL loop's wall
time -> eval. Each eval reports Avg@4 at the sampling temperature (the headline, the policy RL trains)
and the greedy accuracy. Writes ``<out>/summary.json``, ``<out>/report.md`` and
``<out>/plots/*.png``; prints one summary line at the end.

    python scripts/demo.py                       # one seed, runs/demo
    python scripts/demo.py --seeds 3 --out runs/demo3

Recipe knobs (RL steps, learning rates, image size...) live in ``recipes/tiny_cpu_mhpo.yaml``; extra
``key=value`` arguments override it like on the ``mhpo-vl`` command line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECIPE = ROOT / "recipes" / "tiny_cpu_mhpo.yaml"
RL_PLOTS = ("reward.png", "accuracy.png", "response_length.png", "grad_norm.png")
BAR_CHART = "before_after.png"
# SFT (warm start and continuation) also trains the vision tower: with a random frozen tower the tiny
# model stays near chance on the image. RL keeps the recipe's frozen tower (vision features computed
# once per prompt, not once per sample).
SFT_OVERRIDES = ("model.freeze_vision_tower=false",)
EVAL_SAMPLES = 4  # Avg@4 at the sampling temperature over the held-out prompts
# The SFT-continuation baseline draws its batches with another data seed, so it sees fresh prompts
# rather than repeating the warm start's first batches.
CONTINUATION_DATA_SEED_OFFSET = 1000
# The baseline must use at least this share of the RL loop's wall time (else it is rerun, at most
# MAX_BUDGET_TRIES runs in all); using more than 100% only favours the baseline.
BUDGET_MIN_FRACTION = 0.8
MAX_BUDGET_TRIES = 2


@dataclass(frozen=True)
class ModelSize:
    """The tiny model (see ``mhpo_vl.models.tiny.build_tiny_model``)."""

    hidden: int = 128
    layers: int = 2
    heads: int = 4
    vision_hidden: int = 64
    vision_depth: int = 1


def log(message: str) -> None:
    print(f"[demo] {message}", flush=True)


# ----------------------------------------------------------------------------- data


def prepare_data(data_dir: Path, image_size: int, n_train: int, n_test: int) -> dict[str, int]:
    """Write the easy-vqa train and held-out test splits (in-process ``python -m data_prep``).

    Returns record counts per split and the number of images the splits share (0 by construction:
    easy-vqa's train and test images differ, and image files are named by their pixel hash).
    """
    from data_prep.cli import main as data_prep_main

    for split, n in (("train", n_train), ("test", n_test)):
        code = data_prep_main(["synthetic", "--task", "easy_vqa", "--n", str(n), "--image-size", str(image_size),
                               "--split", split, "--output", str(data_dir)])
        if code != 0:
            raise SystemExit(f"demo: data_prep failed for the {split} split (exit code {code})")
    images = {split: {img for r in _read_jsonl(data_dir / f"{split}.jsonl") for img in r["images"]}
              for split in ("train", "test")}
    shared = len(images["train"] & images["test"])
    if shared:
        raise SystemExit(f"demo: {shared} images appear in both train and test under {data_dir}")
    counts = {split: sum(1 for _ in _read_jsonl(data_dir / f"{split}.jsonl")) for split in ("train", "test")}
    return {**counts, "shared_images": shared}


def _read_jsonl(path: Path) -> list[dict]:
    from mhpo_vl.jsonl import iter_jsonl

    return [record for _, record in iter_jsonl(path)]


# ----------------------------------------------------------------------------- phases


def evaluate_model(model_dir: Path, cfg: Any, records: list[dict], seed: int = 0) -> dict[str, Any]:
    """Held-out accuracy of the model saved in ``model_dir`` on ``records``.

    The headline ``accuracy`` is Avg@k of samples at the RL sampling temperature (the policy RL trains;
    the MHPO paper reports Avg@32 the same way); ``greedy_accuracy`` is the greedy decode. Sampling is
    seeded, so the number is reproducible. The processor comes from ``cfg.model.name_or_path`` (a RL
    checkpoint holds weights and config only).
    """
    import dataclasses

    import torch

    from mhpo_vl.evaluation import evaluate
    from mhpo_vl.models import load_policy, load_processor

    processor = load_processor(cfg.model)
    model = load_policy(dataclasses.replace(cfg.model, name_or_path=str(model_dir))).eval()
    common = dict(max_new_tokens=cfg.rollout.max_new_tokens, batch_size=cfg.rollout.eval_batch_size,
                  template=cfg.data.prompt_template, system_prompt=cfg.data.system_prompt,
                  max_prompt_tokens=cfg.data.max_prompt_tokens, progress=False)
    torch.manual_seed(10_000 + seed)
    _, sampled = evaluate(model, processor, records, n_samples=EVAL_SAMPLES,
                          temperature=cfg.rollout.temperature, desc="eval", **common)
    _, greedy = evaluate(model, processor, records, n_samples=1, temperature=0.0, desc="eval", **common)
    return {"accuracy": float(sampled["accuracy"]), "n": int(sampled["n"]), "k": EVAL_SAMPLES,
            "temperature": cfg.rollout.temperature, "greedy_accuracy": float(greedy["accuracy"])}


def _seed_config(recipe: Path, overrides: list[str], model_dir: Path, data_seed: int, pixels: int,
                 *extra: str) -> Any:
    from mhpo_vl.config import load_config

    return load_config(recipe, [*overrides, f"model.name_or_path={model_dir}", f"trainer.seed={data_seed}",
                                f"model.min_pixels={pixels}", f"model.max_pixels={pixels}", *extra])


def warm_start(seed: int, seed_dir: Path, recipe: Path, overrides: list[str], size: ModelSize,
               pixels: int) -> tuple[Any, dict[str, Any], dict[str, float]]:
    """Tiny random model in ``seed_dir/base`` -> SFT warm start saved to ``seed_dir/sft``.

    Returns (SFT config, SFT summary, timings). ``seed_dir/sft`` is what the tiny recipes train from.
    """
    from mhpo_vl.models.tiny import build_tiny_model
    from mhpo_vl.trainer import run_sft

    timings: dict[str, float] = {}
    base_dir, sft_dir = seed_dir / "base", seed_dir / "sft"
    t = time.perf_counter()
    build_tiny_model("qwen2_5_vl", base_dir, hidden=size.hidden, layers=size.layers, heads=size.heads,
                     vision_hidden=size.vision_hidden, vision_depth=size.vision_depth, seed=seed,
                     min_pixels=pixels, max_pixels=pixels)
    timings["build_model"] = time.perf_counter() - t
    log(f"seed {seed}: SFT warm start")
    t = time.perf_counter()
    sft_cfg = _seed_config(recipe, overrides, base_dir, seed, pixels, f"sft.output_dir={sft_dir}", *SFT_OVERRIDES)
    sft = run_sft(sft_cfg)
    timings["sft"] = time.perf_counter() - t
    return sft_cfg, sft, timings


def run_seed(seed: int, seed_dir: Path, recipe: Path, overrides: list[str], size: ModelSize,
             pixels: int, records: list[dict]) -> dict[str, Any]:
    """All phases for one seed; returns the per-seed numbers and timings."""
    from mhpo_vl.trainer import run_sft, run_training
    from mhpo_vl.trainer.checkpoint import latest_checkpoint, read_trainer_state

    sft_dir = seed_dir / "sft"
    rl_dir, cont_dir = seed_dir / "rl", seed_dir / "sft_continuation"
    for stale in (rl_dir, cont_dir):
        shutil.rmtree(stale, ignore_errors=True)

    def config(model_dir: Path, *extra: str, data_seed: int = seed) -> Any:
        return _seed_config(recipe, overrides, model_dir, data_seed, pixels, *extra)

    sft_cfg, sft, timings = warm_start(seed, seed_dir, recipe, overrides, size, pixels)
    sft_step_s = sft["seconds"] / max(1, sft["steps"])

    rl_cfg = config(sft_dir, f"trainer.output_dir={rl_dir}")
    log(f"seed {seed}: eval before RL on {len(records)} held-out prompts (Avg@{EVAL_SAMPLES} sampled, and greedy)")
    t = time.perf_counter()
    before = evaluate_model(sft_dir, rl_cfg, records, seed)
    timings["eval_before_rl"] = time.perf_counter() - t
    log(f"seed {seed}: before RL accuracy {before['accuracy']:.3f}")

    log(f"seed {seed}: MHPO RL, {rl_cfg.trainer.max_steps} steps")
    t = time.perf_counter()
    rl = run_training(rl_cfg)
    timings["rl"] = time.perf_counter() - t
    final = latest_checkpoint(rl_dir)
    if final is None or int(read_trainer_state(final)["step"]) != rl_cfg.trainer.max_steps:
        raise SystemExit(f"demo: the final RL checkpoint (step {rl_cfg.trainer.max_steps}) is missing in {rl_dir}")
    t = time.perf_counter()
    after = evaluate_model(final, rl_cfg, records, seed)
    timings["eval_after_rl"] = time.perf_counter() - t
    log(f"seed {seed}: after RL accuracy {after['accuracy']:.3f} ({final.name})")

    rl_loop_s = float(rl.get("wall_seconds_this_run", timings["rl"]))
    t = time.perf_counter()
    cont_steps, cont = 0, {}
    for attempt in range(MAX_BUDGET_TRIES):
        # Steps for the RL loop's wall time at the latest measured SFT speed; CPU load from other jobs
        # changes that speed, so a run that used well under the budget is redone with the new estimate.
        cont_steps = max(1, round(rl_loop_s / sft_step_s))
        log(f"seed {seed}: SFT-continuation baseline, {cont_steps} steps (budget {rl_loop_s:.0f} s = the RL "
            f"loop's time{', retry at the measured speed' if attempt else ''})")
        shutil.rmtree(cont_dir, ignore_errors=True)
        cont_cfg = config(sft_dir, f"sft.output_dir={cont_dir}", f"sft.max_steps={cont_steps}", *SFT_OVERRIDES,
                          data_seed=seed + CONTINUATION_DATA_SEED_OFFSET)
        cont = run_sft(cont_cfg)
        sft_step_s = float(cont["seconds"]) / cont_steps
        if float(cont["seconds"]) >= BUDGET_MIN_FRACTION * rl_loop_s:
            break
    timings["sft_continuation"] = time.perf_counter() - t
    t = time.perf_counter()
    cont_eval = evaluate_model(cont_dir, cont_cfg, records, seed)
    timings["eval_sft_continuation"] = time.perf_counter() - t
    log(f"seed {seed}: SFT-continuation accuracy {cont_eval['accuracy']:.3f}")
    return {
        "seed": seed,
        "eval_before_rl": before,
        "eval_after_rl": {**after, "checkpoint": str(final)},
        "sft_continuation": {**cont_eval, "steps": cont_steps, "seconds": round(float(cont["seconds"]), 1)},
        "rl": {"steps": rl_cfg.trainer.max_steps, "seconds": round(rl_loop_s, 1), "run_dir": str(rl_dir),
               "train_accuracy": rl.get("accuracy"), "grad_norm": rl.get("grad_norm")},
        "sft_warm_start": {"steps": sft_cfg.sft.max_steps, "seconds": round(float(sft["seconds"]), 1)},
        "timings": {k: round(v, 1) for k, v in timings.items()},
    }


# ----------------------------------------------------------------------------- summary and report


def _mean_eval(per_seed: Sequence[Mapping[str, Any]], key: str) -> dict[str, Any]:
    values = [float(s[key]["accuracy"]) for s in per_seed]
    out: dict[str, Any] = {"accuracy": statistics.fmean(values), "n": int(per_seed[0][key]["n"])}
    first = per_seed[0][key]
    for extra in ("k", "temperature"):
        if extra in first:
            out[extra] = first[extra]
    greedy = [s[key]["greedy_accuracy"] for s in per_seed if "greedy_accuracy" in s[key]]
    if len(greedy) == len(per_seed):
        out["greedy_accuracy"] = statistics.fmean(greedy)
    if len(values) > 1:
        out["std"] = statistics.pstdev(values)
        out["per_seed"] = values
    return out


def build_summary(per_seed: Sequence[Mapping[str, Any]], config: Mapping[str, Any],
                  timings: Mapping[str, float]) -> dict[str, Any]:
    """The summary.json document; top-level evals are means over seeds (per-seed values listed)."""
    if not per_seed:
        raise ValueError("build_summary needs at least one seed's results")
    before = _mean_eval(per_seed, "eval_before_rl")
    after = _mean_eval(per_seed, "eval_after_rl")
    cont = _mean_eval(per_seed, "sft_continuation")
    gains = [s["eval_after_rl"]["accuracy"] - s["eval_before_rl"]["accuracy"] for s in per_seed]
    return {
        "eval_before_rl": before,
        "eval_after_rl": after,
        "sft_continuation": cont,
        "rl_gain": after["accuracy"] - before["accuracy"],
        "rl_gain_per_seed": gains,
        "sft_continuation_gain": cont["accuracy"] - before["accuracy"],
        "winner": winner(after["accuracy"], cont["accuracy"]),
        "per_seed": list(per_seed),
        "config": dict(config),
        "timings": dict(timings),
    }


def winner(rl_accuracy: float, sft_accuracy: float) -> str:
    """``"rl"``, ``"sft_continuation"`` or ``"tie"`` (equal to 3 decimals)."""
    if round(rl_accuracy, 3) == round(sft_accuracy, 3):
        return "tie"
    return "rl" if rl_accuracy > sft_accuracy else "sft_continuation"


def verdict(summary: Mapping[str, Any]) -> str:
    """One plain sentence saying which of RL and SFT-continuation won on the held-out split."""
    rl, cont = summary["eval_after_rl"]["accuracy"], summary["sft_continuation"]["accuracy"]
    if summary["winner"] == "tie":
        return f"RL and SFT-continuation tied ({rl:.1%} each) on the held-out split."
    if summary["winner"] == "rl":
        return f"RL won: {rl:.1%} vs {cont:.1%} for SFT-continuation given the same wall time ({rl - cont:+.1%})."
    return f"SFT-continuation won: {cont:.1%} vs {rl:.1%} for RL given the same wall time ({cont - rl:+.1%})."


def one_line(summary: Mapping[str, Any]) -> str:
    b, a, c = summary["eval_before_rl"], summary["eval_after_rl"], summary["sft_continuation"]
    seeds = len(summary["per_seed"])
    return (f"demo: held-out accuracy (n={a['n']}, {seeds} seed{'s' if seeds > 1 else ''}) before RL "
            f"{b['accuracy']:.3f} -> after RL {a['accuracy']:.3f} ({summary['rl_gain']:+.3f}); "
            f"SFT-continuation {c['accuracy']:.3f}; winner: {summary['winner']}; "
            f"{summary['timings'].get('total', 0.0):.0f} s")


def write_report(summary: Mapping[str, Any], out_dir: Path, plots: Sequence[str]) -> Path:
    """``out_dir/report.md``: what was run, the numbers, the winner, links to the plots."""
    cfg = summary["config"]
    b, a, c = summary["eval_before_rl"], summary["eval_after_rl"], summary["sft_continuation"]
    lines = [
        "# mhpo-vl demo: MHPO on a tiny Qwen2.5-VL model (CPU)",
        "",
        "## What was run",
        "",
        f"- Data: easy-vqa without yes/no questions ({cfg.get('n_train', '?')} train prompts; "
        f"{a['n']} held-out test prompts whose images never appear in train), {cfg.get('image_size', '?')} px "
        "images.",
        f"- Model: a randomly initialised tiny Qwen2.5-VL ({_model_text(cfg.get('model', {}))}).",
        f"- SFT warm start: {cfg.get('sft_steps', '?')} steps to learn the `<answer>...</answer>` format.",
        f"- RL: {cfg.get('algo', 'mhpo')}, {cfg.get('rl_steps', '?')} steps of "
        f"{cfg.get('prompts_per_step', '?')} prompts x {cfg.get('group_size', '?')} samples; the FINAL "
        "checkpoint is evaluated (no best-of selection).",
        "- Baseline: SFT continued from the same warm start for the RL loop's wall time.",
        f"- Evaluation: exact-match accuracy with the verifiers in `mhpo_vl.rewards`. The headline `accuracy` is "
        f"Avg@{b.get('k', EVAL_SAMPLES)}: {b.get('k', EVAL_SAMPLES)} seeded samples per prompt at the RL sampling "
        f"temperature ({b.get('temperature', 1.0)}), i.e. the accuracy of the policy RL trains (the MHPO paper reports "
        "Avg@32 the same way). `greedy` is the greedy decode, shown beside it.",
        "",
        "## Results (held-out accuracy)",
        "",
        "| | accuracy (Avg@k, sampled) | greedy | n |",
        "|---|---|---|---|",
        f"| before RL (SFT warm start) | {b['accuracy']:.3f} | {_greedy(b)} | {b['n']} |",
        f"| after RL (final checkpoint) | {a['accuracy']:.3f} | {_greedy(a)} | {a['n']} |",
        f"| SFT-continuation (same wall time) | {c['accuracy']:.3f} | {_greedy(c)} | {c['n']} |",
        "",
        f"RL gain: **{summary['rl_gain']:+.3f}**; SFT-continuation gain: {summary['sft_continuation_gain']:+.3f}.",
        "",
        f"**{verdict(summary)}**",
        "",
    ]
    if len(summary["per_seed"]) > 1:
        lines += ["Top-level numbers are means over seeds.", ""]
    lines += ["### Per seed", "", "| seed | before RL | after RL | gain | SFT-continuation (steps) | RL loop s | SFT-cont. s |",
              "|---|---|---|---|---|---|---|"]
    for s in summary["per_seed"]:
        gain = s["eval_after_rl"]["accuracy"] - s["eval_before_rl"]["accuracy"]
        lines.append(f"| {s['seed']} | {s['eval_before_rl']['accuracy']:.3f} | {s['eval_after_rl']['accuracy']:.3f} "
                     f"| {gain:+.3f} | {s['sft_continuation']['accuracy']:.3f} ({s['sft_continuation']['steps']}) "
                     f"| {s['rl']['seconds']:.0f} | {s['sft_continuation'].get('seconds', float('nan')):.0f} |")
    lines += ["", "## Plots", ""]
    lines += [f"![{Path(p).stem}](plots/{Path(p).name})" for p in plots]
    lines += ["", "## Timings (seconds)", "", "| phase | s |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in summary["timings"].items()]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _greedy(result: Mapping[str, Any]) -> str:
    value = result.get("greedy_accuracy")
    return "n/a" if value is None else f"{value:.3f}"


def _model_text(model: Mapping[str, Any]) -> str:
    if not model:
        return "default size"
    return (f"text hidden {model.get('hidden')}, {model.get('layers')} layers; vision width "
            f"{model.get('vision_hidden')}, depth {model.get('vision_depth')}")


def bar_chart(summary: Mapping[str, Any], path: Path) -> Path:
    """Bar chart of held-out accuracy: before RL, after RL, SFT-continuation (per-seed dots)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = ("eval_before_rl", "eval_after_rl", "sft_continuation")
    labels = ("before RL\n(SFT warm start)", "after RL\n(final ckpt)", "SFT-continuation\n(same wall time)")
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    means = [summary[k]["accuracy"] for k in keys]
    bars = ax.bar(range(3), means, color=["#999999", "#1f77b4", "#ff7f0e"])
    for i, key in enumerate(keys):
        ax.scatter([i] * len(summary["per_seed"]), [s[key]["accuracy"] for s in summary["per_seed"]],
                   color="black", s=12, zorder=3)
    for bar, value in zip(bars, means):
        ax.text(bar.get_x() + bar.get_width() / 2, value, f"{value:.3f}", ha="center", va="bottom")
    ax.set_xticks(range(3), labels)
    ax.set_ylabel(f"held-out accuracy (n={summary['eval_after_rl']['n']})")
    ax.set_ylim(0, 1)
    ax.set_title("easy-vqa held-out accuracy")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def collect_plots(rl_dir: Path, plots_dir: Path) -> list[str]:
    """Copy the RL run's reward/accuracy/length/grad-norm plots into ``plots_dir``; returns the names."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in RL_PLOTS:
        src = rl_dir / "plots" / name
        if src.is_file():
            shutil.copyfile(src, plots_dir / name)
            copied.append(name)
    return copied


def write_outputs(summary: dict[str, Any], out_dir: Path, rl_dir: Path | None) -> list[str]:
    """summary.json, plots/ and report.md under ``out_dir``; returns the plot names."""
    plots_dir = out_dir / "plots"
    plots = collect_plots(rl_dir, plots_dir) if rl_dir is not None else []
    plots.insert(0, bar_chart(summary, plots_dir / BAR_CHART).name)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    write_report(summary, out_dir, plots)
    return plots


# ----------------------------------------------------------------------------- main


ASSETS_MARKER = "tiny_assets.json"  # written last by --assets-only: what was built, so a rerun is a no-op


def asset_spec(args: argparse.Namespace, size: ModelSize) -> dict[str, Any]:
    """What ``--assets-only`` builds; a marker holding the same spec means the assets are up to date."""
    return {"image_size": args.image_size, "n_train": args.n_train, "n_test": args.n_test,
            "seed": args.first_seed, "model": size.__dict__, "recipe": str(args.recipe),
            "overrides": list(args.overrides)}


def assets_ready(out: Path, spec: dict[str, Any]) -> bool:
    """True when ``out`` holds the data and warm-started model of ``spec`` (marker and files present)."""
    marker = out / ASSETS_MARKER
    try:
        if json.loads(marker.read_text()) != json.loads(json.dumps(spec)):
            return False
    except (OSError, ValueError):
        return False
    sft = out / f"seed_{spec['seed']}" / "sft"
    needed = [out / "data" / "train.jsonl", out / "data" / "test.jsonl", sft / "config.json",
              sft / "model.safetensors", sft / "summary.json"]
    return all(path.is_file() for path in needed)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=2, help="number of seeds; results are averaged (default 2, about 3 minutes each on 2 cores)")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory (default runs/demo)")
    p.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help="RL/SFT recipe (default tiny_cpu_mhpo)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed, first-seed+1, ... (default 0)")
    p.add_argument("--image-size", type=int, default=84, help="image side in px, multiple of 28 (default 84: 9 image tokens)")
    p.add_argument("--n-test", type=int, default=1000, help="held-out prompts, >= 1000 for the gate (default 1000)")
    p.add_argument("--n-train", type=int, default=6000, help="train prompts (easy-vqa has 10168; default 6000)")
    p.add_argument("--hidden", type=int, default=ModelSize.hidden, help="text hidden size")
    p.add_argument("--layers", type=int, default=ModelSize.layers, help="text layers")
    p.add_argument("--vision-hidden", type=int, default=ModelSize.vision_hidden, help="vision width")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--assets-only", action="store_true",
                   help="only build what the tiny recipes train from (data and the first seed's SFT warm start); "
                        "a no-op when they are already there (`make tiny-assets`)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides, e.g. trainer.max_steps=300")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error("--seeds must be >= 1")
    if args.image_size < 28 or args.image_size % 28:
        p.error("--image-size must be a multiple of 28")
    return args


def quiet_transformers(threads: int = 0) -> None:
    """Errors only from transformers, no per-file progress bars; ``threads`` torch threads (0 = default)."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if threads:
        torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_transformers(args.threads)
    import torch
    t0 = time.perf_counter()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_dir = out / "data"
    size = ModelSize(hidden=args.hidden, layers=args.layers, vision_hidden=args.vision_hidden)
    pixels = args.image_size * args.image_size
    overrides = [f"data.train_dir={data_dir}", f"data.eval_dir={data_dir}", "logging.progress_bar=false",
                 *args.overrides]
    spec = asset_spec(args, size)
    if args.assets_only and assets_ready(out, spec):
        log(f"tiny assets already in {out} (data/, seed_{args.first_seed}/sft/): nothing to do")
        return 0
    (out / ASSETS_MARKER).unlink(missing_ok=True)  # the data and warm start below replace the old ones
    log(f"preparing easy-vqa data ({args.image_size} px) in {data_dir}")
    counts = prepare_data(data_dir, args.image_size, args.n_train, args.n_test)
    prep_s = time.perf_counter() - t0
    log(f"data: {counts['train']} train, {counts['test']} held-out test prompts, 0 shared images")
    if args.assets_only:
        warm_start(args.first_seed, out / f"seed_{args.first_seed}", args.recipe, overrides, size, pixels)
        (out / ASSETS_MARKER).write_text(json.dumps(spec, indent=1))
        log(f"tiny assets built in {time.perf_counter() - t0:.0f} s: {data_dir} and "
            f"{out / f'seed_{args.first_seed}' / 'sft'}")
        return 0
    from mhpo_vl.config import load_config
    from mhpo_vl.data import load_records

    records = load_records(data_dir, "test")
    per_seed = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        per_seed.append(run_seed(seed, out / f"seed_{seed}", args.recipe, overrides, size, pixels, records))
    cfg = load_config(args.recipe, overrides)
    config = {"recipe": str(args.recipe), "overrides": list(args.overrides), "image_size": args.image_size,
              "n_train": counts["train"], "n_test": counts["test"], "seeds": args.seeds,
              "model": {"arch": "qwen2_5_vl", **size.__dict__}, "algo": cfg.algo.name,
              "rl_steps": cfg.trainer.max_steps, "sft_steps": cfg.sft.max_steps,
              "prompts_per_step": cfg.rollout.prompts_per_step, "group_size": cfg.rollout.group_size,
              "rl_lr": cfg.trainer.lr, "sft_lr": cfg.sft.lr, "torch_threads": torch.get_num_threads()}
    timings = {"data_prep": round(prep_s, 1)}
    for key in per_seed[0]["timings"]:
        timings[key] = round(statistics.fmean(s["timings"][key] for s in per_seed), 1)
    timings["total"] = round(time.perf_counter() - t0, 1)
    summary = build_summary(per_seed, config, timings)
    write_outputs(summary, out, Path(per_seed[0]["rl"]["run_dir"]))
    log(f"wrote {out / 'summary.json'}, {out / 'report.md'} and {out / 'plots'}")
    print(one_line(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
