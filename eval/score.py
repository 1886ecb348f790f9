"""``python -m eval score``: score existing responses (from any system) with the same verifiers."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

from eval.extractors import LocalJudge, benchmark_extractor
from eval.io import read_jsonl, write_text
from eval.loaders import answer_to_str, load_records
from eval.protocols import apply_protocol, get_protocol, protocol_metrics
from eval.registry import BenchmarkSpec
from eval.report import SAMPLES, existing_model, update_results
from mhpo_vl.errors import UserError
from mhpo_vl.evaluation import score_samples, summarize


def benchmark_metrics(spec: BenchmarkSpec, samples: list[dict], records: dict[str, dict]) -> tuple[list[dict], dict]:
    """Samples scored by our verifiers -> (samples with the protocol's ``correct`` and ``correct_strict``,
    metrics with the headline ``accuracy``, ``accuracy_strict`` and the protocol's own metrics)."""
    protocol = get_protocol(spec.protocol.name)
    samples = apply_protocol(protocol, samples, records)
    metrics = summarize(samples, records)
    metrics.update(protocol_metrics(protocol, samples, records, spec.protocol))
    return samples, metrics


def resolve_ids(samples: list[dict], records: dict[str, dict], benchmark: str, path: Path) -> None:
    """Map response ids to record ids in place: the record id itself, else (for benchmarks whose ids are
    not numbers) the 0-based row index. Unknown ids are a ``UserError`` with a hint."""
    order = list(records)
    by_index = {} if any(i.isdigit() for i in order) else {str(i): rid for i, rid in enumerate(order)}
    shared: dict[str, list[str]] = {}
    for rid, record in records.items():
        base = str(((record.get("meta") or {}).get("protocol") or {}).get("ID", ""))
        if base and base != rid:
            shared.setdefault(base, []).append(rid)
    unknown = []
    for s in samples:
        if s["id"] not in records:
            if s["id"] in by_index:
                s["id"] = by_index[s["id"]]
            else:
                unknown.append(s["id"])
    for pid in unknown:
        if pid in shared:
            raise UserError(f"{path}: id {pid!r} is shared by {len(shared[pid])} {benchmark} rows; use the row id "
                            f"'ID/key' (e.g. {shared[pid][-1]!r}) or the 0-based row index")
    if unknown:
        shown = ", ".join(repr(u) for u in sorted(set(unknown))[:3])
        raise UserError(f"{path}: {len(set(unknown))} id(s) not in {benchmark} (e.g. {shown}); ids are the "
                        f"benchmark's id field or the 0-based row index")


def read_responses(path: Path, benchmark: str) -> list[dict]:
    """Responses JSONL -> samples ``{"benchmark", "id", "sample", "response", "response_length"}``.

    Each line has ``id`` and ``response`` (or a ``responses`` list); several lines (or list entries)
    for one id are several samples. Ids may be strings or integers.
    """
    if not path.is_file():
        raise UserError(f"responses file not found: {path}")
    rows, _ = read_jsonl(path)
    counts: Counter[str] = Counter()
    samples = []
    for lineno, row in enumerate(rows, 1):
        if "id" not in row or ("response" not in row and "responses" not in row):
            raise UserError(f"{path}: line {lineno}: needs 'id' and 'response' keys")
        texts = row["responses"] if "responses" in row else [row["response"]]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise UserError(f"{path}: line {lineno}: 'response' must be a string ('responses' a list of strings)")
        pid = answer_to_str(row["id"])
        for text in texts:
            length = row.get("response_length") if len(texts) == 1 else None
            samples.append({"benchmark": benchmark, "id": pid, "sample": counts[pid], "response": text,
                            "response_length": int(length) if isinstance(length, (int, float)) else len(text)})
            counts[pid] += 1
    if not samples:
        raise UserError(f"{path}: no responses")
    return samples


def _renumber(samples: list[dict]) -> None:
    """Sample numbers per id after id resolution (a row may be named by its id and its index)."""
    counts: Counter[str] = Counter()
    for s in samples:
        s["sample"] = counts[s["id"]]
        counts[s["id"]] += 1


def score_file(spec: BenchmarkSpec, *, data: Optional[str], responses: Path, output: Path,
               model_name: Optional[str] = None, judge: Optional[LocalJudge] = None, extract: str = "tags") -> dict:
    """Score ``responses`` for ``spec``; writes ``output/samples.jsonl``, ``results.json``, ``results.md``
    and returns the benchmark's metrics."""
    model_name = model_name or existing_model(output) or responses.stem
    samples = read_responses(responses, spec.name)  # a bad responses file fails before any data loads
    records = {r["id"]: r for r in load_records(spec, data_dir=data, with_images=False)}  # scoring reads no image
    resolve_ids(samples, records, spec.name, responses)
    _renumber(samples)
    missing = len(set(records) - {s["id"] for s in samples})
    if missing:
        print(f"note: {missing} of {len(records)} {spec.name} prompts have no response; "
              f"scoring the {len(records) - missing} that do", file=sys.stderr)
    scored = score_samples(samples, records, extractor=benchmark_extractor(spec, judge), extract=extract)
    scored, metrics = benchmark_metrics(spec, scored, records)
    metrics.update({"n_missing": missing, "response_length_unit": "characters", "responses": str(responses),
                    "data_dir": str(Path(data).resolve()) if data else None})
    extra = {"judge": judge.info()} if judge is not None else {}
    update_results(output, model_name, {spec.name: metrics}, extra)
    path = output / SAMPLES
    kept = [r for r in read_jsonl(path)[0] if r.get("benchmark") != spec.name] if path.is_file() else []
    write_text(path, "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in kept + scored))
    return metrics
