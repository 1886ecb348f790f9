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
from eval.registry import BenchmarkSpec
from eval.report import SAMPLES, existing_model, update_results
from mhpo_vl.errors import UserError
from mhpo_vl.evaluation import score_samples, summarize


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


def score_file(spec: BenchmarkSpec, *, data: Optional[str], responses: Path, output: Path,
               model_name: Optional[str] = None, judge: Optional[LocalJudge] = None) -> dict:
    """Score ``responses`` for ``spec``; writes ``output/samples.jsonl``, ``results.json``, ``results.md``
    and returns the benchmark's metrics."""
    model_name = model_name or existing_model(output) or responses.stem
    records = {r["id"]: r for r in load_records(spec, data_dir=data)}
    samples = read_responses(responses, spec.name)
    unknown = sorted({s["id"] for s in samples} - set(records))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:3])
        raise UserError(f"{responses}: {len(unknown)} id(s) not in {spec.name} (e.g. {shown}); ids are the "
                        f"benchmark's id field or the 0-based row index")
    missing = len(set(records) - {s["id"] for s in samples})
    if missing:
        print(f"note: {missing} of {len(records)} {spec.name} prompts have no response; "
              f"scoring the {len(records) - missing} that do", file=sys.stderr)
    scored = score_samples(samples, records, extractor=benchmark_extractor(spec, judge))
    metrics = summarize(scored, records)
    metrics.update({"n_missing": missing, "response_length_unit": "characters", "responses": str(responses)})
    extra = {"judge": judge.info()} if judge is not None else None
    update_results(output, model_name, {spec.name: metrics}, extra)
    path = output / SAMPLES
    kept = [r for r in read_jsonl(path)[0] if r.get("benchmark") != spec.name] if path.is_file() else []
    write_text(path, "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in kept + scored))
    return metrics
