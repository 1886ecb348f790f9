"""results.json / results.md for one eval output directory, and side-by-side comparison of several."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eval.io import read_json, write_json, write_text
from mhpo_vl.errors import UserError

RESULTS = "results.json"
SAMPLES = "samples.jsonl"


def extraction_note(benchmarks: dict[str, dict]) -> str | None:
    """The note that rule extraction stands in for the official GPT extraction step, naming the
    benchmarks (by their metrics' ``protocol``) whose published protocol has one; None when none has."""
    from eval.protocols import PROTOCOLS

    names = [name for name, m in benchmarks.items()
             if getattr(PROTOCOLS.get((m.get("protocol") or {}).get("name")), "gpt_extraction", False)]
    if not names:
        return None
    return ("rule-based extraction (<answer>, \\boxed{}, answer patterns) stands in for the official GPT "
            f"extraction step of {', '.join(names)}")


def update_results(out: Path, model: str, benchmarks: dict[str, dict], extra: dict | None = None) -> dict:
    """Merge per-benchmark metrics into ``out/results.json`` (other benchmarks kept), rewrite
    ``results.md``, and return the merged results. Results of another model are never mixed in.
    ``extraction_note`` is set from the merged benchmarks (absent when none has a GPT extraction step)."""
    path = out / RESULTS
    results: dict[str, Any] = read_json(path) if path.is_file() else {}
    if results.get("model") not in (None, model):
        raise UserError(f"{path} holds results of model {results['model']!r}, not {model!r}; "
                        f"use another --output (or --overwrite with run)")
    results["model"] = model
    results.setdefault("benchmarks", {}).update(benchmarks)
    results.update(extra or {})
    note = extraction_note(results["benchmarks"])
    if note:
        results["extraction_note"] = note
    else:
        results.pop("extraction_note", None)
    write_json(path, results)
    write_text(out / "results.md", render_markdown(results))
    return results


def existing_model(out: Path) -> str | None:
    """The model named in ``out/results.json``, if there is one."""
    path = out / RESULTS
    return read_json(path).get("model") if path.is_file() else None


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}" if isinstance(value, (int, float)) else "-"


FOUR_DIMENSIONAL = ("IK", "IG", "CM_strict", "CM_loose", "RM_strict", "RM_loose", "score_strict", "score_loose")


def render_markdown(results: dict) -> str:
    """A readable summary: one row per benchmark, protocol metrics (We-Math), then per-subset tables."""
    lines = [f"# Evaluation of `{results.get('model', '?')}`", "",
             "| benchmark | n | k | accuracy (Avg@k, %) | strict (%) | pass@k (%) | extraction failures (%) "
             "| mean length |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    benches = results.get("benchmarks", {})
    for name, m in benches.items():
        lines.append(f"| {name} | {m.get('n', '-')} | {m.get('k', '-')} | {_pct(m.get('accuracy'))} | "
                     f"{_pct(m.get('accuracy_strict'))} | {_pct(m.get('pass@k'))} | "
                     f"{_pct(m.get('extraction_failure_rate'))} | {m.get('mean_response_length', 0):.1f} |")
    lines += ["", "accuracy: the benchmark's published scoring protocol (see `mhpo-eval list --details NAME`); "
                  "strict: our verifiers (as in the RL rewards)."]
    if results.get("extraction_note"):
        lines += ["", f"Note: {results['extraction_note']}."]
    for name, m in benches.items():
        if any(k in m for k in FOUR_DIMENSIONAL):
            counts = m.get("four_dimensional_counts") or {}
            lines += ["", f"## {name}: four-dimensional metrics ({m.get('n_problems', '-')} problems)", "",
                      "| metric | value (%) | count |", "|---|---:|---:|"]
            lines += [f"| {k} | {_pct(m.get(k))} | {counts.get(k, '')} |" for k in FOUR_DIMENSIONAL]
            lines += [f"| {k} | {_pct(m.get(k))} | |" for k in ("S1", "S2", "S3") if k in m]
    for name, m in benches.items():
        for subset, values in (m.get("subsets") or {}).items():
            lines += ["", f"## {name} by {subset}", "", "| value | n | accuracy (%) |", "|---|---:|---:|"]
            lines += [f"| {value} | {v['n']} | {_pct(v['accuracy'])} |" for value, v in values.items()]
    if results.get("judge"):
        lines += ["", f"Answers the rules could not read were extracted by the judge model "
                      f"`{results['judge'].get('model')}`."]
    return "\n".join(lines) + "\n"


def load_results(out: str | Path) -> dict:
    """``OUT/results.json`` (``OUT`` may also be the file itself)."""
    path = Path(out)
    if path.is_dir():
        path = path / RESULTS
    if not path.is_file():
        raise UserError(f"no {RESULTS} at {path} (run `python -m eval run` or `score` first)")
    results = read_json(path)
    if not isinstance(results, dict) or not isinstance(results.get("benchmarks"), dict):
        raise UserError(f"{path}: not an eval results file (no 'benchmarks' mapping)")
    return results


def _labels(outs: list[str], results: list[dict]) -> list[str]:
    labels = [Path(o).name if Path(o).is_dir() else Path(o).parent.name for o in outs]
    if len(set(labels)) < len(labels):
        labels = [str(o) for o in outs]
    return labels


def compare_table(outs: list[str], metric: str = "accuracy") -> tuple[str, list[str], dict[str, list]]:
    """Markdown table (benchmarks x runs) of ``metric`` in percent; also returns labels and values."""
    results = [load_results(o) for o in outs]
    labels = _labels(outs, results)
    names = list(dict.fromkeys(b for r in results for b in r["benchmarks"]))
    values = {b: [r["benchmarks"].get(b, {}).get(metric) for r in results] for b in names}
    header = f"| benchmark ({metric}, %) | " + " | ".join(labels) + " |"
    lines = [header, "|---|" + "---:|" * len(labels)]
    for b in names:
        lines.append(f"| {b} | " + " | ".join(_pct(v) for v in values[b]) + " |")
    models = " | ".join(f"{lab}: `{r.get('model', '?')}`" for lab, r in zip(labels, results))
    return "\n".join(lines) + f"\n\nModels: {models}\n", labels, values


def bar_chart(labels: list[str], values: dict[str, list], path: Path, metric: str) -> None:
    """Grouped bars: one group per benchmark, one bar per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(values)
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(names) * max(1, len(labels)) ** 0.5 + 2), 4))
    for i, label in enumerate(labels):
        present = [(j, 100 * values[b][i]) for j, b in enumerate(names) if isinstance(values[b][i], (int, float))]
        xs = [j + (i - (len(labels) - 1) / 2) * width for j, _ in present]
        bars = ax.bar(xs, [y for _, y in present], width, label=label)  # a missing benchmark: no bar
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=20 if len(names) > 4 else 0)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_ylim(0, 115)
    ax.legend(fontsize=8, ncols=min(len(labels), 4), loc="upper center")
    ax.set_title(f"{metric} by benchmark")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
