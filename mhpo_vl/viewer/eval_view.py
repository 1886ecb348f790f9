"""The viewer of eval outputs: samples with their prompt, images, extracted answer vs reference, filters
per benchmark and subset, and two outputs side by side on the same ids.

Input is plain data (the ``eval`` package reads the directories and the benchmark records):
each :class:`EvalRun` holds one output's samples and the records they answer.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mhpo_vl.viewer.images import save_thumbnail
from mhpo_vl.viewer.page import write_page

SAMPLE_FIELDS = ("sample", "response", "extracted", "correct", "score", "response_length")


@dataclass
class EvalRun:
    """One eval output: ``samples`` as in samples.jsonl; ``records[(benchmark, id)]`` the prompts they answer
    (may be empty); ``roots[benchmark]`` the folders its image paths may come from."""

    label: str
    samples: list[dict[str, Any]]
    results: dict[str, Any] = field(default_factory=dict)
    records: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    roots: dict[str, list[Path]] = field(default_factory=dict)


def _sample_view(s: dict[str, Any]) -> dict[str, Any]:
    out = {k: s.get(k) for k in SAMPLE_FIELDS if k in s}
    out["response"] = str(s.get("response", ""))
    out["correct"] = bool(s.get("correct"))
    if out.get("extracted") is not None:
        out["extracted"] = str(out["extracted"])
    flags = {k: v for k, v in s.items() if isinstance(v, bool) and k != "correct"}
    if flags:
        out["flags"] = flags
    return out


def _summary_html(runs: list[EvalRun], benchmarks: list[str]) -> str:
    head = "".join(f"<th>{html.escape(r.label)}</th>" for r in runs)
    rows = []
    for name in benchmarks:
        cells = []
        for r in runs:
            m = (r.results.get("benchmarks") or {}).get(name)
            if isinstance(m, dict) and isinstance(m.get("accuracy"), (int, float)):
                cells.append(f"{100 * m['accuracy']:.1f}% (n={m.get('n', '?')}, k={m.get('k', '?')})")
            else:
                n = sum(1 for s in r.samples if s.get("benchmark") == name)
                cells.append(f"{n} samples" if n else "-")
        rows.append(f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    models = "".join(f"<tr><th>{html.escape(r.label)}</th><td colspan=\"{len(runs)}\">"
                     f"{html.escape(str(r.results.get('model', '?')))}</td></tr>" for r in runs)
    return (f'<table class="summary"><tr><th>benchmark</th>{head}</tr>{"".join(rows)}</table>'
            f'<table class="summary"><tr><th>output</th><th colspan="{len(runs)}">model</th></tr>{models}</table>')


def build_eval_viewer(runs: list[EvalRun], out: str | Path) -> Path:
    """Write the viewer of one or two eval outputs to ``out``; returns the path of ``index.html``."""
    out_dir = Path(out)
    keys: list[tuple[str, str]] = []
    grouped: list[dict[tuple[str, str], list[dict[str, Any]]]] = []
    for run in runs:
        by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for s in run.samples:
            key = (str(s.get("benchmark", "?")), str(s.get("id")))
            if key not in by_key and all(key not in g for g in grouped):
                keys.append(key)
            by_key.setdefault(key, []).append(_sample_view(s))
        for samples in by_key.values():
            samples.sort(key=lambda s: s.get("sample") if isinstance(s.get("sample"), int) else 0)
        grouped.append(by_key)
    images_dir = out_dir / "images"
    thumbs: dict[int, dict[str, str]] = {}
    subsets: dict[str, set[str]] = {}
    items = []
    for key in keys:
        benchmark, pid = key
        record = next((r.records[key] for r in runs if key in r.records), None)
        roots = next((r.roots.get(benchmark, []) for r in runs if key in r.records), [])
        item: dict[str, Any] = {"benchmark": benchmark, "id": pid, "samples": [g.get(key, []) for g in grouped]}
        if record is not None:
            item.update(prompt=str(record.get("prompt", "")), answer=str(record.get("answer", "")))
            sub = {str(k): str(v) for k, v in ((record.get("meta") or {}).get("subsets") or {}).items()}
            item["subsets"] = sub
            for name, value in sub.items():
                subsets.setdefault(name, set()).add(value)
            images = []
            for entry in record.get("images") or []:
                shown = entry if isinstance(entry, str) else "(embedded image)"
                if id(entry) not in thumbs:
                    thumbs[id(entry)] = save_thumbnail(entry, images_dir, roots=roots)
                images.append({"path": Path(shown).name if isinstance(entry, str) else shown, **thumbs[id(entry)]})
            item["images"] = images
        items.append(item)
    benchmarks = list(dict.fromkeys(k[0] for k in keys))
    data = {
        "kind": "eval", "items": items, "benchmarks": benchmarks,
        "subsets": {name: sorted(values) for name, values in sorted(subsets.items())},
        "runs": [{"label": r.label, "key": chr(ord("A") + i)} for i, r in enumerate(runs)],
    }
    title = "mhpo-eval: " + " vs ".join(r.label for r in runs)
    return write_page(out_dir, title=title, data=data, header_html=_summary_html(runs, benchmarks))
