"""``mhpo-eval view EVAL_DIR [--compare EVAL_DIR2]``: a static HTML viewer of eval samples.

Reads ``samples.jsonl`` and ``results.json`` of each output and, for prompts, references and images,
the benchmark's records from its data folder: ``--data-dir``, else the folder recorded in results.json
by ``run``/``score``. Nothing else is read; nothing is downloaded (a benchmark that came from the hub
is shown without its prompts unless ``--data-dir`` points at a local copy).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

from eval.io import read_json, read_jsonl
from eval.loaders import load_records
from eval.registry import BenchmarkSpec, get_benchmark
from eval.report import RESULTS, SAMPLES
from mhpo_vl.errors import UserError
from mhpo_vl.viewer.eval_view import EvalRun, build_eval_viewer


def _data_dir(name: str, results: dict[str, Any], data_dir: Optional[str]) -> Optional[Path]:
    if data_dir:
        return Path(data_dir)
    recorded = ((results.get("benchmarks") or {}).get(name) or {}).get("data_dir")
    return Path(recorded) if recorded else None


def _records(spec: BenchmarkSpec, data: Optional[Path]) -> list[dict]:
    if data is None and spec.source != "reasoning_gym":
        raise UserError("no local data folder recorded; pass --data-dir")
    return load_records(spec, data_dir=data)


def load_eval_run(out: Path, *, data_dir: Optional[str] = None,
                  extra_specs: Optional[dict[str, BenchmarkSpec]] = None) -> EvalRun:
    """One eval output directory with the records its samples answer (missing records noted on stderr)."""
    if not out.is_dir():
        raise UserError(f"eval output directory not found: {out}")
    if not (out / SAMPLES).is_file():
        raise UserError(f"{out}: no {SAMPLES} (not an eval output directory?)")
    samples, _ = read_jsonl(out / SAMPLES, tolerate_cut=True)
    results = read_json(out / RESULTS) if (out / RESULTS).is_file() else {}
    run = EvalRun(label=out.resolve().name, samples=samples, results=results)
    for name in dict.fromkeys(str(s.get("benchmark")) for s in samples):
        data = _data_dir(name, results, data_dir)
        try:
            spec = get_benchmark(name, extra_specs or {})
            records = _records(spec, data)
        except UserError as exc:
            print(f"note: {out}: {name}: prompts, references and images not shown ({exc})", file=sys.stderr)
            continue
        run.records.update({(name, r["id"]): r for r in records})
        if data is not None:
            run.roots[name] = [data.resolve() if data.is_dir() else data.resolve().parent]
    return run


def view(outputs: list[Path], out: Optional[Path], *, data_dir: Optional[str] = None,
         extra_specs: Optional[dict[str, BenchmarkSpec]] = None) -> Path:
    """Write the viewer of one output (or two side by side); returns the page's path."""
    runs = [load_eval_run(p, data_dir=data_dir, extra_specs=extra_specs) for p in outputs]
    if len(runs) == 2 and runs[0].label == runs[1].label:
        runs[0].label, runs[1].label = f"A: {runs[0].label}", f"B: {runs[1].label}"
    return build_eval_viewer(runs, out or outputs[0] / "viewer")
