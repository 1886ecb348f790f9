"""`make compare`: MHPO vs GRPO vs DAPO on the demo task over several seeds (not part of CI).

Per seed: one tiny model and one SFT warm start (shared by all losses, so they start equal), then RL
with each recipe (`recipes/tiny_cpu_<algo>.yaml`, identical but for the algo section) and a held-out
evaluation of each final checkpoint. Writes ``<out>/compare.md`` (held-out accuracy and gradient-norm
statistics: std, max, largest step-to-step jump), ``<out>/compare.json`` and ``<out>/compare.png``
(reward and gradient-norm curves, mean over seeds).

    python scripts/compare.py --seeds 3 --out runs/compare
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo  # noqa: E402  (the demo's data, model and evaluation steps)

ALGOS = ("mhpo", "grpo", "dapo")


def grad_norm_stats(metrics: list[dict[str, Any]]) -> dict[str, float]:
    """std, max and largest step-to-step jump of the gradient norm over a run (finite values only)."""
    norms = [float(m["grad_norm"]) for m in metrics
             if isinstance(m.get("grad_norm"), (int, float)) and m["grad_norm"] == m["grad_norm"]]
    if len(norms) < 2:
        return {"std": 0.0, "max": max(norms, default=0.0), "max_jump": 0.0}
    jumps = [abs(b - a) for a, b in zip(norms, norms[1:])]
    return {"std": statistics.pstdev(norms), "max": max(norms), "max_jump": max(jumps)}


def _mean_sd(values: list[float]) -> str:
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def write_table(results: dict[str, list[dict[str, Any]]], out: Path) -> str:
    lines = ["| loss | held-out acc (Avg@k, T=1) | greedy acc | before RL | grad-norm std | grad-norm max | largest jump |",
             "|---|---|---|---|---|---|---|"]
    for algo, runs in results.items():
        lines.append(
            f"| {algo} | {_mean_sd([r['after']['accuracy'] for r in runs])} "
            f"| {_mean_sd([r['after']['greedy_accuracy'] for r in runs])} "
            f"| {_mean_sd([r['before']['accuracy'] for r in runs])} "
            f"| {_mean_sd([r['grad']['std'] for r in runs])} | {_mean_sd([r['grad']['max'] for r in runs])} "
            f"| {_mean_sd([r['grad']['max_jump'] for r in runs])} |")
    text = "\n".join(lines) + "\n"
    (out / "compare.md").write_text(f"# MHPO vs GRPO vs DAPO (tiny CPU task, {len(next(iter(results.values())))} "
                                    f"seeds, mean ± sd over seeds)\n\n{text}")
    return text


def plot_curves(curves: dict[str, list[list[dict[str, Any]]]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    for col, key in enumerate(("reward/mean", "grad_norm")):
        ax = fig.add_subplot(1, 2, col + 1)
        for algo, runs in curves.items():
            steps = min(len(r) for r in runs)
            mean = [statistics.fmean(float(r[i].get(key) or 0.0) for r in runs) for i in range(steps)]
            window = 10
            smooth = [statistics.fmean(mean[max(0, i - window + 1): i + 1]) for i in range(steps)]
            ax.plot(range(1, steps + 1), smooth, label=algo)
        ax.set_xlabel("RL step")
        ax.set_title(f"{key} (mean over seeds, 10-step average)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    p.add_argument("--out", type=Path, default=Path("runs/compare"), help="output directory")
    p.add_argument("--image-size", type=int, default=84, help="image side in px (default 84)")
    p.add_argument("--n-test", type=int, default=1000, help="held-out prompts (default 1000)")
    p.add_argument("--n-train", type=int, default=6000, help="train prompts (default 6000)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides for every recipe")
    args = p.parse_args(argv)
    from mhpo_vl.config import load_config
    from mhpo_vl.data import load_records
    from mhpo_vl.models.tiny import build_tiny_model
    from mhpo_vl.trainer import run_sft, run_training
    from mhpo_vl.trainer.checkpoint import latest_checkpoint
    from mhpo_vl.trainer.metrics import read_metrics

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data_dir = out / "data"
    demo.prepare_data(data_dir, args.image_size, args.n_train, args.n_test)
    records = load_records(data_dir, "test")
    pixels = args.image_size ** 2
    size = demo.ModelSize()
    common = [f"data.train_dir={data_dir}", f"data.eval_dir={data_dir}", "logging.progress_bar=false",
              f"model.min_pixels={pixels}", f"model.max_pixels={pixels}", *args.overrides]
    results: dict[str, list[dict[str, Any]]] = {a: [] for a in ALGOS}
    curves: dict[str, list[list[dict[str, Any]]]] = {a: [] for a in ALGOS}
    for seed in range(args.seeds):
        seed_dir = out / f"seed_{seed}"
        base, sft_dir = seed_dir / "base", seed_dir / "sft"
        build_tiny_model("qwen2_5_vl", base, hidden=size.hidden, layers=size.layers, heads=size.heads,
                         vision_hidden=size.vision_hidden, vision_depth=size.vision_depth, seed=seed,
                         min_pixels=pixels, max_pixels=pixels)
        recipe = demo.ROOT / "recipes" / "tiny_cpu_mhpo.yaml"
        run_sft(load_config(recipe, [*common, f"model.name_or_path={base}", f"sft.output_dir={sft_dir}",
                                     f"trainer.seed={seed}", *demo.SFT_OVERRIDES]))
        for algo in ALGOS:
            recipe = demo.ROOT / "recipes" / f"tiny_cpu_{algo}.yaml"
            run_dir = seed_dir / f"rl_{algo}"
            cfg = load_config(recipe, [*common, f"model.name_or_path={sft_dir}", f"trainer.output_dir={run_dir}",
                                       f"trainer.seed={seed}"])
            demo.log(f"seed {seed}: {algo} RL, {cfg.trainer.max_steps} steps")
            run_training(cfg)
            metrics = read_metrics(run_dir / "metrics.jsonl")
            before = demo.evaluate_model(sft_dir, cfg, records, seed)
            after = demo.evaluate_model(latest_checkpoint(run_dir), cfg, records, seed)
            results[algo].append({"seed": seed, "before": before, "after": after, "grad": grad_norm_stats(metrics)})
            curves[algo].append(metrics)
            demo.log(f"seed {seed}: {algo} held-out {before['accuracy']:.3f} -> {after['accuracy']:.3f}")
    table = write_table(results, out)
    (out / "compare.json").write_text(json.dumps({"results": results, "seconds": time.perf_counter() - t0}, indent=2))
    plot_curves(curves, out / "compare.png")
    print(table)
    print(f"wrote {out / 'compare.md'}, {out / 'compare.json'}, {out / 'compare.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
