"""Measured per-token log r vs applied gradient weight, from off-policy runs' logged rollouts (docs/measured_weights.png).

Reads ``rollouts/step_*.jsonl`` of each run (``logging.rollouts_every`` / ``rollouts_per_step``; log every
prompt of the batch, ``rollouts_per_step`` = ``rollout.prompts_per_step``, or only the first mini-batch, which
is on-policy, is seen). Each logged token carries the log r of the last forward pass the update made over it
(``logp - old logp``) and its response's advantage A. For every token with A != 0 the script evaluates the
run's own loss (``algo`` and hyperparameters from the run's ``config.yaml``) at that log r and the sign of A and
plots the gradient weight -dl/dlogp / A, the same quantity as ``docs/loss_weights.png``, whose curves these
measured points sit on; the lower panels are the measured log r histograms. Make the runs and the picture::

    python scripts/compare.py --regime off_policy --losses mhpo,grpo --seeds 1 --steps 60 --out runs/weights \\
        logging.rollouts_every=5 logging.rollouts_per_step=16
    python scripts/plot_measured_weights.py runs/weights
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plot_loss_weights import gradient_weight  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STYLE = {"mhpo": {"color": "black", "marker": "o"}, "grpo": {"color": "tab:orange", "marker": "x"}}


def load_tokens(run_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(log r, advantage) of every logged response token with a nonzero advantage, as float64 vectors (n,)."""
    log_ratios: list[float] = []
    advantages: list[float] = []
    files = sorted((run_dir / "rollouts").glob("step_*.jsonl"))
    if not files:
        raise SystemExit(f"plot_measured_weights: no rollouts/step_*.jsonl under {run_dir} "
                         f"(run with logging.rollouts_every > 0)")
    for path in files:
        for line in path.read_text().splitlines():
            for response in json.loads(line)["responses"]:
                adv = response.get("advantage")
                if not adv or "log_ratio" not in response:
                    continue
                log_ratios += response["log_ratio"]
                advantages += [adv] * len(response["log_ratio"])
    return torch.tensor(log_ratios, dtype=torch.float64), torch.tensor(advantages, dtype=torch.float64)


def run_loss(run_dir: Path) -> tuple[str, dict]:
    """(loss name, hyperparameters except aggregation) as the run resolved them."""
    from mhpo_vl.config import load_config
    from mhpo_vl.trainer.rl import resolve_loss

    cfg = load_config(run_dir / "config.yaml", [])
    _, hparams, _ = resolve_loss(cfg)
    return cfg.algo.name, {k: v for k, v in hparams.items() if k not in ("agg", "max_len")}


def measured_weights(run_dirs: list[Path]) -> dict[str, Any]:
    """Per token of the runs (one loss, several seeds): log r, sign of A, and the loss's gradient weight at
    that log r and sign (with the loss's name and hyperparameters)."""
    parts = [load_tokens(d) for d in run_dirs]
    log_r, adv = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    name, hparams = run_loss(run_dirs[0])
    weight = torch.empty_like(log_r)
    for sign in (1.0, -1.0):
        pick = adv * sign > 0
        if pick.any():
            weight[pick] = gradient_weight(name, log_r[pick].exp(), sign, **hparams)
    return {"name": name, "hparams": hparams, "log_r": log_r, "sign": adv.sign(), "weight": weight}


def plot(runs: dict[str, dict], out: Path, title: str) -> Path:
    """Scatter of weight vs log r (A > 0 left, A < 0 right) and the log r histograms under them."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    lo = min(float(r["log_r"].min()) for r in runs.values())
    hi = max(float(r["log_r"].max()) for r in runs.values())
    pad = max(0.05 * (hi - lo), 0.1)
    lo, hi = lo - pad, hi + pad
    bins = torch.linspace(lo, hi, 61).tolist()
    grid = torch.linspace(lo, hi, 601, dtype=torch.float64)
    for col, sign in enumerate((1.0, -1.0)):
        top, bottom = axes[0, col], axes[1, col]
        for label, r in runs.items():
            pick = r["sign"] == sign
            x, w = r["log_r"][pick], r["weight"][pick]
            style = STYLE.get(r["name"], {})
            zero = float((w == 0).double().mean()) if len(w) else 0.0
            top.scatter(x, w, s=9, alpha=0.35, linewidths=0.6, color=style.get("color"), marker=style.get("marker", "o"),
                        label=f"{label}: {len(w)} tokens, mean weight {float(w.mean()):.3f}, zero weight {zero:.1%}")
            bottom.hist(x.tolist(), bins=bins, histtype="step", lw=1.5, color=style.get("color"), label=label)
            top.plot(grid, gradient_weight(r["name"], grid.exp(), sign, **r["hparams"]), lw=0.8, alpha=0.6,
                     color=style.get("color"))
        top.axvline(0.0, color="grey", lw=0.6)
        top.set_xlim(lo, hi)
        top.set_title(f"tokens with A {'>' if sign > 0 else '<'} 0")
        top.grid(alpha=0.3)
        top.legend(fontsize=8, loc="upper left")
        bottom.set_yscale("log")
        bottom.set_xlabel("measured log r = logp_theta - logp_old")
        bottom.grid(alpha=0.3)
    axes[0, 0].set_ylabel("gradient weight  -dl/dlogp / A")
    axes[1, 0].set_ylabel("tokens")
    axes[1, 0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("compare_dir", type=Path, help="a scripts/compare.py --out directory")
    p.add_argument("--losses", default="mhpo,grpo", help="compared losses to plot (default mhpo,grpo)")
    p.add_argument("--seeds", default="all", help="comma-separated seeds to pool, or all (default)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "measured_weights.png")
    args = p.parse_args(argv)
    settings = json.loads((args.compare_dir / "compare.json").read_text())
    regime = settings["regime"]
    seeds = (sorted({r["seed"] for r in settings["runs"]}) if args.seeds == "all"
             else [int(x) for x in args.seeds.split(",")])
    runs = {name: measured_weights([args.compare_dir / f"seed_{seed}" / f"{regime}_{name}" for seed in seeds])
            for name in args.losses.split(",")}
    s = settings["settings"]
    title = (f"Measured per-token log r vs gradient weight (lines: the loss at that log r): {regime}, "
             f"{s['updates_per_batch']} updates per batch,\n{s['model']} model, lr {s['lr']:g}, {s['steps']} steps, "
             f"logged rollouts of seed(s) {', '.join(map(str, seeds))}")
    print(f"wrote {plot(runs, args.out, title)}")
    for name, r in runs.items():
        far = float((r["log_r"].abs() > 0.2).double().mean())
        print(f"{name}: {len(r['log_r'])} tokens, log r in [{float(r['log_r'].min()):.3f}, {float(r['log_r'].max()):.3f}]"
              f", |log r| > 0.2: {far:.1%}, mean weight {float(r['weight'].mean()):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
