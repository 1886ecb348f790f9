"""Statistics, ``compare.json``, ``report.md`` and plots of ``scripts/compare.py`` (no training here).

Every function reads a run's ``metrics.jsonl`` records (dicts as :func:`mhpo_vl.trainer.metrics.read_metrics`
returns) or the per-run dicts built from them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ENTROPY_FLOOR = 0.05  # mean token entropy (nats) of the last steps below this = collapsed policy
# One answer per prompt: a held-out prompt is "single-answer" when all its sampled responses (Avg@k's k
# samples at the sampling temperature) give the same extracted answer (no answer counts as one value);
# a run whose share of single-answer prompts reaches this is collapsed, whatever its token entropy.
SINGLE_ANSWER_SHARE = 0.95
SPIKE_FACTOR = 3.0  # a grad norm above SPIKE_FACTOR x the running median of the earlier steps is a spike
SPIKE_WARMUP = 5  # steps before spikes are counted (the running median needs a few values)
FINAL_WINDOW = 5  # entropy_final = mean over the last FINAL_WINDOW logged steps
# Summary metrics: name -> how to read it from a run dict.
SUMMARY_KEYS = {
    "accuracy": ("eval", "accuracy"), "greedy_accuracy": ("eval", "greedy_accuracy"),
    "grad_norm_std": ("grad_norm", "std"), "grad_norm_max": ("grad_norm", "max"),
    "grad_norm_max_jump": ("grad_norm", "max_jump"), "grad_norm_spikes": ("grad_norm", "spikes"),
    "ratio_min": ("ratio", "min"), "ratio_max": ("ratio", "max"), "ratio_far_frac": ("ratio", "far_frac"),
    "entropy_final": ("entropy_final",), "single_answer_share": ("single_answer_share",),
    "collapsed": ("collapsed",), "skipped_steps": ("skipped_steps",),
}


def _finite(metrics: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    """The finite numeric values of ``key`` over the records that have it."""
    values = [m.get(key) for m in metrics]
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def grad_norm_stats(metrics: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """std, max, largest step-to-step jump and spike count of the per-step gradient norm."""
    norms = _finite(metrics, "grad_norm")
    spikes = sum(1 for i in range(SPIKE_WARMUP, len(norms))
                 if norms[i] > SPIKE_FACTOR * statistics.median(norms[:i]))
    jumps = [abs(b - a) for a, b in zip(norms, norms[1:])]
    return {"std": statistics.pstdev(norms) if len(norms) > 1 else 0.0, "max": max(norms, default=0.0),
            "max_jump": max(jumps, default=0.0), "spikes": spikes}


def ratio_stats(metrics: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """min / max of the ratio over the run and the mean per-step share of tokens with |log r| > 0.2."""
    lows, highs = _finite(metrics, "loss/ratio_min"), _finite(metrics, "loss/ratio_max")
    far = _finite(metrics, "loss/ratio_far_frac")
    return {"min": min(lows, default=float("nan")), "max": max(highs, default=float("nan")),
            "far_frac": statistics.fmean(far) if far else float("nan")}


def weight_stats(metrics: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Run means of what the loss does to far tokens: clip fraction, LFM saturation, hazard weight (None: not reported)."""
    out: dict[str, float | None] = {}
    for key in ("clip_frac", "lfm_saturated_frac", "hazard_weight_mean", "gate_mean"):
        values = _finite(metrics, f"loss/{key}")
        out[key] = statistics.fmean(values) if values else None
    return out


def single_answer_share(samples: Sequence[Mapping[str, Any]]) -> float:
    """Share of prompts (samples grouped by ``id``) whose samples all have the same ``extracted`` answer.

    ``samples`` are :func:`mhpo_vl.evaluation.evaluate`'s (``{"id", "extracted", ...}``); answers compare
    after stripping whitespace, and a missing answer (None) is one value of its own. Prompts with a single
    sample say nothing about diversity and are left out; NaN when no prompt has two or more samples.
    """
    answers: dict[str, list[str | None]] = {}
    for s in samples:
        extracted = s.get("extracted")
        answers.setdefault(str(s["id"]), []).append(extracted.strip() if isinstance(extracted, str) else None)
    groups = [a for a in answers.values() if len(a) > 1]
    return sum(1 for a in groups if len(set(a)) == 1) / len(groups) if groups else float("nan")


def is_collapsed(entropy_final: float, single_share: float) -> bool:
    """Collapsed: final entropy under :data:`ENTROPY_FLOOR` (or not finite), or one answer per prompt on at
    least :data:`SINGLE_ANSWER_SHARE` of the held-out prompts."""
    return bool(not entropy_final >= ENTROPY_FLOOR or single_share >= SINGLE_ANSWER_SHARE)


def run_stats(metrics: Sequence[Mapping[str, Any]], eval_result: Mapping[str, Any]) -> dict[str, Any]:
    """One ``runs[]`` entry of compare.json (without loss and seed) from metrics.jsonl and the held-out eval
    (``{"accuracy", "greedy_accuracy", "n", "single_answer_share"?}``; without the share only entropy decides)."""
    entropy = _finite(metrics, "entropy")[-FINAL_WINDOW:]
    entropy_final = statistics.fmean(entropy) if entropy else float("nan")
    single = float(eval_result.get("single_answer_share", float("nan")))
    skipped = _finite(metrics, "skipped_steps")
    return {
        "eval": {"accuracy": float(eval_result["accuracy"]), "greedy_accuracy": float(eval_result["greedy_accuracy"]),
                 "n": int(eval_result["n"])},
        "grad_norm": grad_norm_stats(metrics),
        "ratio": ratio_stats(metrics),
        "entropy_final": entropy_final,
        "single_answer_share": single,
        "collapsed": is_collapsed(entropy_final, single),
        "skipped_steps": int(skipped[-1]) if skipped else 0,
        "weights": weight_stats(metrics),
    }


def _pick(run: Mapping[str, Any], path: Sequence[str]) -> float:
    """The metric at ``path`` in a run dict; NaN where an older compare.json lacks it."""
    value: Any = run
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return math.nan
        value = value[key]
    return float(value) if value is not None else math.nan


def mean_sd(values: Sequence[float]) -> dict[str, float]:
    """{"mean", "sd"} (population sd; 0 for one value; NaN sd when a value is not finite)."""
    if not all(math.isfinite(v) for v in values):
        return {"mean": statistics.fmean(values), "sd": math.nan}
    return {"mean": statistics.fmean(values), "sd": statistics.pstdev(values) if len(values) > 1 else 0.0}


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """{loss: {metric: {"mean", "sd"}}} over the seeds of each loss, in the order the losses first appear."""
    losses = list(dict.fromkeys(r["loss"] for r in runs))
    return {loss: {name: mean_sd([_pick(r, path) for r in runs if r["loss"] == loss])
                   for name, path in SUMMARY_KEYS.items()} for loss in losses}


def paired_differences(runs: Sequence[Mapping[str, Any]], reference: str = "mhpo") -> dict[str, dict[str, dict[str, float]]]:
    """{baseline: {metric: {"mean", "sd"}}} of reference minus baseline, paired by seed (seeds both ran)."""
    by_key = {(r["loss"], r["seed"]): r for r in runs}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for loss in dict.fromkeys(r["loss"] for r in runs):
        if loss == reference:
            continue
        seeds = [s for (name, s) in by_key if name == loss and (reference, s) in by_key]
        if seeds:
            out[loss] = {name: {**mean_sd([_pick(by_key[(reference, s)], path) - _pick(by_key[(loss, s)], path)
                                           for s in seeds]), "n": len(seeds)} for name, path in SUMMARY_KEYS.items()}
    return out


# Two-sided 5% critical values of Student's t by degrees of freedom (1.96 beyond the table).
T_CRIT = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23}


def exceeds_noise(diff: Mapping[str, float]) -> bool:
    """Paired t-test at 5% (two-sided) on a paired difference {"mean", "sd" (population), "n"}: the mean is
    farther from 0 than seed noise explains. Never true for fewer than 2 seeds; a nonzero mean with sd 0 is."""
    n = int(diff.get("n", 1))
    if n < 2 or diff["mean"] == 0 or not math.isfinite(diff["mean"]):
        return False
    stderr = diff["sd"] / math.sqrt(n - 1)  # sample sd / sqrt(n), from the population sd
    return stderr == 0 or abs(diff["mean"]) / stderr > T_CRIT.get(n - 1, 1.96)


REPORT_COLUMNS = ("accuracy", "greedy_accuracy", "grad_norm_std", "grad_norm_max", "grad_norm_spikes",
                  "ratio_min", "ratio_max", "ratio_far_frac", "entropy_final", "single_answer_share", "collapsed",
                  "skipped_steps")


def _cell(stat: Mapping[str, float]) -> str:
    mark = " *" if "n" in stat and exceeds_noise(stat) else ""
    return f"{stat['mean']:.3f} ± {stat['sd']:.3f}{mark}"


def tables(result: Mapping[str, Any], columns: Sequence[str] = REPORT_COLUMNS) -> tuple[str, str]:
    """Markdown tables: mean ± sd over seeds per loss, and MHPO minus each baseline paired by seed ("*": the
    paired difference exceeds seed noise, :func:`exceeds_noise`); the second is empty without MHPO."""
    header = "| loss | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns) + "\n"
    rows = "".join(f"| {loss} | " + " | ".join(_cell(stats[c]) for c in columns) + " |\n"
                   for loss, stats in result["summary"].items())
    diffs = paired_differences(result["runs"])
    diff_rows = "".join(f"| {loss} | " + " | ".join(_cell(d[c]) for c in columns) + " |\n" for loss, d in diffs.items())
    return header + rows, (header.replace("| loss |", "| baseline |") + diff_rows) if diffs else ""


WEIGHT_KEYS = ("clip_frac", "lfm_saturated_frac", "hazard_weight_mean", "gate_mean")


def weights_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of the run means in ``weights`` (clip fraction, LFM saturation, hazard weight, SAPO gate),
    mean ± sd over seeds per loss; "–" where the loss does not report it."""
    header = "| loss | " + " | ".join(WEIGHT_KEYS) + " |\n|---|" + "---|" * len(WEIGHT_KEYS) + "\n"
    rows = []
    for loss in dict.fromkeys(r["loss"] for r in runs):
        cells = []
        for key in WEIGHT_KEYS:
            values = [_pick(r, ("weights", key)) for r in runs if r["loss"] == loss]
            cells.append(_cell(mean_sd(values)) if values and all(math.isfinite(v) for v in values) else "–")
        rows.append(f"| {loss} | " + " | ".join(cells) + " |\n")
    return header + "".join(rows)


def write_report(result: Mapping[str, Any], path: Path, plots: Sequence[str]) -> None:
    """report.md: settings, mean ± sd over seeds per loss, paired per-seed differences MHPO minus each baseline."""
    summary_table, diff_table = tables(result)
    settings = result["settings"]
    warm = settings.get("warm_start") or {}
    lines = [f"# Loss comparison: {result['regime']} regime, {settings['model']} model, {settings['seeds']} seed(s), "
             f"{settings['steps']} RL steps\n",
             "Settings: " + ", ".join(f"`{k}={v}`" for k, v in settings.items() if k != "warm_start") + "\n"]
    if warm:
        parts = [f"{key} {_cell(mean_sd([float(w[key]) for w in warm.values()]))}"
                 for key in ("accuracy", "greedy_accuracy", "single_answer_share") if all(key in w for w in warm.values())]
        lines.append(f"Warm start before RL (the same evaluation, {len(warm)} seed(s)): " + ", ".join(parts) + "\n")
    lines += [f"Mean ± sd over seeds. Accuracy: held-out Avg@{settings['eval_samples']} at the sampling temperature; "
              f"single_answer_share: share of held-out prompts whose {settings['eval_samples']} samples all give the "
              f"same extracted answer; collapsed: final entropy < {ENTROPY_FLOOR} or single_answer_share >= "
              f"{SINGLE_ANSWER_SHARE}; spikes: grad norm > {SPIKE_FACTOR:g}x the running median.\n",
              summary_table]
    if diff_table:
        lines.append("## MHPO minus each baseline, paired by seed (mean ± sd of the per-seed differences; *: "
                     "exceeds seed noise, paired t-test at 5%)\n")
        lines.append(diff_table)
    lines += ["## What the losses did to the tokens (run means; mean ± sd over seeds)\n", weights_table(result["runs"])]
    lines += [f"![{name}]({name})\n" for name in plots]
    path.write_text("\n".join(lines))


CURVES = {"accuracy.png": ("accuracy", "rollout accuracy"), "grad_norm.png": ("grad_norm", "gradient norm"),
          "ratio.png": (("loss/ratio_min", "loss/ratio_max"), "ratio range (min and max per step)"),
          "entropy.png": ("entropy", "mean token entropy")}


def plot_curves(curves: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], out: Path) -> list[str]:
    """One PNG per curve in :data:`CURVES`: per loss the mean over seeds (10-step average) with a min-max seed band."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    written = []
    for name, (keys, title) in CURVES.items():
        fig = Figure(figsize=(7, 4))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        for loss, runs in curves.items():
            for key in (keys if isinstance(keys, tuple) else (keys,)):
                series = [_smooth([float(m.get(key, math.nan)) for m in run]) for run in runs]
                steps = min((len(s) for s in series), default=0)
                if not steps:
                    continue
                cols = [[s[i] for s in series] for i in range(steps)]
                x = range(1, steps + 1)
                line, = ax.plot(x, [statistics.fmean(c) for c in cols],
                                label=loss if key == (keys[0] if isinstance(keys, tuple) else keys) else None)
                if len(series) > 1:
                    ax.fill_between(x, [min(c) for c in cols], [max(c) for c in cols], alpha=0.2,
                                    color=line.get_color())
        ax.set_xlabel("RL step")
        ax.set_title(f"{title} (mean over seeds, 10-step average, band: seed min-max)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        written.append(name)
    return written


def _smooth(values: Sequence[float], window: int = 10) -> list[float]:
    out = []
    for i in range(len(values)):
        chunk = [v for v in values[max(0, i - window + 1): i + 1] if math.isfinite(v)]
        out.append(statistics.fmean(chunk) if chunk else math.nan)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Print the markdown tables of ``DIR/compare.json`` (what the README quotes): ``python scripts/compare_stats.py DIR``."""
    import argparse
    import json

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("dirs", nargs="+", type=Path, help="scripts/compare.py --out directories")
    p.add_argument("--columns", default=",".join(REPORT_COLUMNS), help="comma-separated summary metrics")
    args = p.parse_args(argv)
    columns = args.columns.split(",")
    unknown = [c for c in columns if c not in SUMMARY_KEYS]
    if unknown:
        p.error(f"--columns: unknown {', '.join(unknown)}; choose from {', '.join(SUMMARY_KEYS)}")
    for d in args.dirs:
        result = json.loads((d / "compare.json").read_text())
        result["summary"] = summarize(result["runs"])  # metrics added since an older file was written: NaN
        s = result["settings"]
        print(f"{d}: {result['regime']}, {s['model']}, {s['seeds']} seed(s), {s['steps']} steps, lr {s['lr']:g}, "
              f"{s['seconds'] / 60:.0f} min{'' if s.get('complete', True) else ' (incomplete)'}\n")
        for table in (*tables(result, columns), weights_table(result["runs"])):
            if table:
                print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
