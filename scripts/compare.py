"""`make compare`: MHPO vs the baselines and MHPO's ablations, on-policy or off-policy, over several seeds.

Per seed, every loss starts from the same SFT warm start (tiny VLM; SmolLM2: the pretrained model) and sees the same prompts in the
same order (same ``trainer.seed``, no dynamic sampling); only the algo section differs. Regimes:
``on_policy`` is one optimizer step per rollout batch (the ratio is exactly 1, the losses barely differ);
``off_policy`` splits each rollout batch into 4 mini-batches (``algo.mini_batch_size``), times
``--ppo-epochs``, so later steps train on stale samples and the ratio moves away from 1. Writes
``<out>/compare.json``, ``<out>/report.md`` and PNGs (see ``scripts/compare_stats.py``).

    python scripts/compare.py --regime off_policy --losses mhpo,grpo --seeds 1 --steps 60 --out runs/cmp
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare_stats  # noqa: E402
import demo  # noqa: E402  (the tiny demo's data and warm start: what `make tiny-assets` builds)

# Each compared loss: the algo overrides on top of the recipe (everything else identical).
LOSSES: dict[str, tuple[str, ...]] = {
    "mhpo": ("algo.name=mhpo",),
    "grpo": ("algo.name=grpo",),
    "dapo": ("algo.name=dapo",),
    "gspo": ("algo.name=gspo",),
    "sapo": ("algo.name=sapo",),
    "mhpo_lfm_only": ("algo.name=mhpo", "algo.dhp=false"),
    "mhpo_dhp_only": ("algo.name=mhpo", "algo.lfm=false"),
    "mhpo_normalized": ("algo.name=mhpo", "algo.dhp_normalize=true"),
}
DEFAULT_LOSSES = "mhpo,grpo,dapo,gspo,sapo,mhpo_lfm_only,mhpo_dhp_only,mhpo_normalized"
OFF_POLICY_UPDATES = 4  # optimizer steps per rollout batch (per epoch) in the off_policy regime
RECIPES = {"tiny": demo.ROOT / "recipes" / "tiny_cpu_mhpo.yaml",
           "smollm2": demo.ROOT / "recipes" / "smollm2_135m_chain_sum_mhpo.yaml"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--regime", choices=("on_policy", "off_policy"), default="off_policy",
                   help=f"on_policy: 1 optimizer step per rollout batch; off_policy: {OFF_POLICY_UPDATES} (default)")
    p.add_argument("--ppo-epochs", type=int, default=1, help="passes over each rollout batch (default 1)")
    p.add_argument("--losses", default=DEFAULT_LOSSES, help=f"comma-separated, from: {', '.join(LOSSES)}")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    p.add_argument("--steps", type=int, default=0, help="RL steps per run (default: the recipe's)")
    p.add_argument("--lr-scale", type=float, default=1.0, help="multiply the recipe's learning rate (stress setting)")
    p.add_argument("--model", choices=tuple(RECIPES), default="tiny", help="tiny VLM (default) or smollm2")
    p.add_argument("--out", type=Path, default=Path("runs/compare"), help="output directory")
    p.add_argument("--image-size", type=int, default=84, help="tiny: image side in px (default 84)")
    p.add_argument("--n-test", type=int, default=1000, help="held-out prompts (default 1000)")
    p.add_argument("--n-train", type=int, default=0, help="train prompts (default: 6000 tiny, 2000 smollm2)")
    p.add_argument("--sft-steps", type=int, default=0, help="tiny: SFT warm-start steps (default: the recipe's)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides for every run")
    args = p.parse_args(argv)
    args.n_train = args.n_train or (6000 if args.model == "tiny" else 2000)
    unknown = [name for name in args.losses.split(",") if name not in LOSSES]
    if unknown:
        p.error(f"--losses: unknown {', '.join(unknown)}; choose from {', '.join(LOSSES)}")
    for flag in ("seeds", "ppo_epochs", "n_test"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1")
    if args.steps < 0 or args.sft_steps < 0 or not args.lr_scale > 0:
        p.error("--steps and --sft-steps must be >= 0 and --lr-scale > 0")
    return args


def regime_overrides(cfg: Any, regime: str, ppo_epochs: int, steps: int, lr_scale: float) -> list[str]:
    """Overrides that set the regime, run length and learning rate on top of recipe ``cfg``."""
    batch = cfg.rollout.prompts_per_step * cfg.rollout.group_size
    mini = batch if regime == "on_policy" else batch // OFF_POLICY_UPDATES
    if mini < 1 or batch % OFF_POLICY_UPDATES and regime == "off_policy":
        raise SystemExit(f"compare: the rollout batch ({batch}) does not split into {OFF_POLICY_UPDATES} mini-batches")
    out = [f"algo.mini_batch_size={mini}", f"algo.ppo_epochs={ppo_epochs}", "algo.dynamic_sampling=false",
           f"trainer.lr={cfg.trainer.lr * lr_scale}"]
    if steps:
        out.append(f"trainer.max_steps={steps}")
    return out


def prepare_tiny(args: argparse.Namespace, out: Path, seed: int, common: list[str]) -> Path:
    """The data (once) and this seed's SFT warm start (``out/seed_<seed>/sft``); reused when already built."""
    data_dir = out / "data"
    if not ((data_dir / "train.jsonl").is_file() and (data_dir / "test.jsonl").is_file()):
        demo.prepare_data(data_dir, args.image_size, args.n_train, args.n_test)
    seed_dir = out / f"seed_{seed}"
    sft_dir = seed_dir / "sft"
    if not (sft_dir / "model.safetensors").is_file():
        extra = [f"sft.max_steps={args.sft_steps}"] if args.sft_steps else []
        demo.warm_start(seed, seed_dir, RECIPES["tiny"], [*common, *extra], demo.ModelSize(), args.image_size ** 2)
    return sft_dir


def prepare_smollm2(args: argparse.Namespace, out: Path) -> Path:
    """SmolLM2-135M-Instruct converted to ``out/model`` and reasoning-gym chain_sum in ``out/data`` (as
    `make demo-real` builds them; needs its extras). Returns the model directory."""
    import demo_real

    model_dir = demo_real.convert_model(out / "model")
    data_dir = out / "data"
    if not ((data_dir / "train.jsonl").is_file() and (data_dir / "test.jsonl").is_file()):
        demo_real.prepare_data(data_dir, args.n_train, args.n_test)
    return model_dir


def evaluate_run(model_dir: Path, cfg: Any, records: list[dict], seed: int) -> dict[str, Any]:
    """Held-out Avg@k at the sampling temperature (seeded), greedy accuracy of ``model_dir`` and the share of
    prompts whose k samples all give one answer (see ``compare_stats.single_answer_share``).

    The tokenizer/processor comes from ``cfg.model`` (a RL checkpoint holds weights and config only);
    answers are read with ``cfg.reward.extract``, as the reward reads them in training.
    """
    import dataclasses

    import torch

    from mhpo_vl.evaluation import evaluate
    from mhpo_vl.models import load_policy, load_processor

    processor = load_processor(cfg.model)
    model = load_policy(dataclasses.replace(cfg.model, name_or_path=str(model_dir))).eval()
    common = dict(max_new_tokens=cfg.rollout.max_new_tokens, batch_size=cfg.rollout.eval_batch_size,
                  template=cfg.data.prompt_template, system_prompt=cfg.data.system_prompt,
                  max_prompt_tokens=cfg.data.max_prompt_tokens, extract=cfg.reward.extract, progress=False)
    torch.manual_seed(10_000 + seed)
    samples, sampled = evaluate(model, processor, records, n_samples=demo.EVAL_SAMPLES,
                                temperature=cfg.rollout.temperature, desc="eval", **common)
    _, greedy = evaluate(model, processor, records, n_samples=1, temperature=0.0, desc="eval", **common)
    return {"accuracy": float(sampled["accuracy"]), "greedy_accuracy": float(greedy["accuracy"]),
            "n": int(sampled["n"]), "single_answer_share": compare_stats.single_answer_share(samples)}


def evaluate_warm_start(start: Path, cfg: Any, records: list[dict], seed: int, cache: Path) -> dict[str, Any]:
    """The held-out evaluation of the model every run of this seed starts from (cached in ``cache``)."""
    if cache.is_file():
        return json.loads(cache.read_text())
    evaluated = evaluate_run(start, cfg, records, seed)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(evaluated))
    return evaluated


def write_result(args: argparse.Namespace, base_cfg: Any, recipe: Path, runs: list[dict[str, Any]], n_test: int,
                 seconds: float, out: Path, *, complete: bool, warm_start: dict[int, dict[str, Any]] | None = None
                 ) -> dict[str, Any]:
    """Write ``out/compare.json`` and a plot-less ``out/report.md`` for the runs so far (after every run, so an
    interrupted comparison keeps what finished: ``settings.complete`` is false until the last run)."""
    settings = {"model": args.model, "recipe": str(recipe.relative_to(demo.ROOT)), "seeds": args.seeds,
                "steps": base_cfg.trainer.max_steps if not args.steps else args.steps,
                "ppo_epochs": args.ppo_epochs, "updates_per_batch": (OFF_POLICY_UPDATES if args.regime == "off_policy"
                                                                     else 1) * args.ppo_epochs,
                "lr": base_cfg.trainer.lr * args.lr_scale, "lr_scale": args.lr_scale, "losses": args.losses.split(","),
                "eval_samples": demo.EVAL_SAMPLES, "n_test": n_test, "overrides": list(args.overrides),
                "seconds": round(seconds, 1), "complete": complete,
                "warm_start": {str(seed): value for seed, value in (warm_start or {}).items()}}
    result = {"regime": args.regime, "settings": settings, "runs": runs, "summary": compare_stats.summarize(runs)}
    (out / "compare.json").write_text(json.dumps(result, indent=2))
    if not complete:
        compare_stats.write_report(result, out / "report.md", [])
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    recipe = RECIPES[args.model]
    if not recipe.is_file():
        print(f"compare: --model {args.model} needs its recipe {recipe.relative_to(demo.ROOT)}, which does not "
              f"exist yet", file=sys.stderr)
        return 2
    from mhpo_vl.config import load_config
    from mhpo_vl.data import load_records
    from mhpo_vl.errors import UserError
    from mhpo_vl.trainer import run_training
    from mhpo_vl.trainer.checkpoint import latest_checkpoint
    from mhpo_vl.trainer.metrics import read_metrics

    demo.quiet_transformers()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data_dir = out / "data"
    common = [f"data.train_dir={data_dir}", f"data.eval_dir={data_dir}", "logging.progress_bar=false"]
    if args.model == "tiny":
        pixels = args.image_size ** 2
        common += [f"model.min_pixels={pixels}", f"model.max_pixels={pixels}"]
    common += args.overrides
    try:
        base_cfg = load_config(recipe, common)
        extra = regime_overrides(base_cfg, args.regime, args.ppo_epochs, args.steps, args.lr_scale)
        smollm2_dir = prepare_smollm2(args, out) if args.model == "smollm2" else None
    except UserError as err:
        print(f"compare: {err}", file=sys.stderr)
        return 2
    losses = args.losses.split(",")
    runs: list[dict[str, Any]] = []
    curves: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in losses}
    records = None
    warm_start: dict[int, dict[str, Any]] = {}
    for seed in range(args.seeds):
        start = smollm2_dir or prepare_tiny(args, out, seed, common)
        if records is None:
            records = load_records(Path(base_cfg.data.eval_dir), base_cfg.data.eval_split)[:args.n_test]
        start_cfg = load_config(recipe, [*common, f"model.name_or_path={start}"])
        warm_start[seed] = evaluate_warm_start(start, start_cfg, records, seed,
                                               out / f"seed_{seed}" / f"warm_start_eval_n{len(records)}.json")
        demo.log(f"seed {seed}: warm start held-out {warm_start[seed]['accuracy']:.3f} "
                 f"(greedy {warm_start[seed]['greedy_accuracy']:.3f})")
        for name in losses:
            run_dir = out / f"seed_{seed}" / f"{args.regime}_{name}"
            cfg = load_config(recipe, [*common, f"model.name_or_path={start}", f"trainer.output_dir={run_dir}",
                                       f"trainer.seed={seed}", *extra, *LOSSES[name]])
            demo.log(f"seed {seed}: {name} ({args.regime}), {cfg.trainer.max_steps} RL steps")
            t = time.perf_counter()
            run_training(cfg)
            metrics = read_metrics(run_dir / "metrics.jsonl")
            evaluated = evaluate_run(latest_checkpoint(run_dir), cfg, records, seed)
            stats = compare_stats.run_stats(metrics, evaluated)
            runs.append({"loss": name, "seed": seed, **stats, "seconds": time.perf_counter() - t})
            curves[name].append(metrics)
            demo.log(f"seed {seed}: {name} held-out {evaluated['accuracy']:.3f}, ratio "
                     f"[{stats['ratio']['min']:.3f}, {stats['ratio']['max']:.3f}]")
            write_result(args, base_cfg, recipe, runs, len(records), time.perf_counter() - t0, out, complete=False,
                         warm_start=warm_start)
    result = write_result(args, base_cfg, recipe, runs, len(records or []), time.perf_counter() - t0, out,
                          complete=True, warm_start=warm_start)
    plots = compare_stats.plot_curves(curves, out)
    compare_stats.write_report(result, out / "report.md", plots)
    print((out / "report.md").read_text())
    print(f"wrote {out / 'compare.json'}, {out / 'report.md'} and {len(plots)} PNGs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
