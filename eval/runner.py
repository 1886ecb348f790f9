"""``python -m eval run``: generate with a model on benchmarks, score, and write the output directory.

Output (DESIGN.md section 4): ``samples.jsonl`` (one line per sample, appended as batches finish),
``results.json``, ``results.md``, and ``run_config.json`` (the settings each benchmark was generated
with). Rerunning the same command continues an interrupted run: prompts whose samples are all on
disk are skipped; a cut-off last line is dropped.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from eval.extractors import LocalJudge, benchmark_extractor
from eval.io import append_jsonl, read_json, read_jsonl, write_json, write_text
from eval.loaders import load_records
from eval.preflight import check_model_paths, check_vllm_model
from eval.protocols import apply_protocol, get_protocol
from eval.registry import BenchmarkSpec, get_benchmark, resolve_template
from eval.report import RESULTS, SAMPLES, update_results
from eval.score import benchmark_metrics
from mhpo_vl.errors import UserError
from mhpo_vl.evaluation import evaluate

RUN_CONFIG = "run_config.json"
DEFAULT_TEMPLATE = "think_answer"


@dataclass
class RunOptions:
    """Everything ``eval run`` needs; None means "the benchmark's default"."""

    model: str
    benchmarks: list[str]
    output: Path
    data_dir: Optional[str] = None
    limit: Optional[int] = None
    n_samples: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    max_new_tokens: Optional[int] = None
    batch_size: int = 8
    template: Optional[str] = None
    system_prompt: Optional[str] = None
    lora: Optional[str] = None
    dtype: str = "auto"
    device: str = "auto"
    min_pixels: Optional[int] = None
    max_pixels: Optional[int] = None
    max_prompt_tokens: int = 8192
    judge_model: Optional[str] = None
    seed: int = 0
    backend: str = "hf"
    overwrite: bool = False
    progress: bool = True
    extract: str = "tags"
    extra_specs: dict[str, BenchmarkSpec] = field(default_factory=dict)


def generation_settings(spec: BenchmarkSpec, opts: RunOptions) -> dict[str, Any]:
    """The settings ``spec`` is generated with: command-line values over the benchmark's defaults.

    Asking for several samples of a greedy benchmark without a temperature samples at 1.0.
    """
    n = opts.n_samples or spec.n_samples
    temperature = opts.temperature if opts.temperature is not None else spec.temperature
    if opts.temperature is None and n > 1 and temperature == 0:
        temperature = 1.0
        print(f"note: {spec.name}: sampling {n} responses per prompt at temperature 1.0 "
              f"(pass --temperature to choose)", file=sys.stderr)
    return {
        "n_samples": n,
        "temperature": temperature,
        "top_p": opts.top_p if opts.top_p is not None else spec.top_p,
        "max_new_tokens": opts.max_new_tokens or spec.max_new_tokens,
        "template": opts.template or spec.template or DEFAULT_TEMPLATE,
        "system_prompt": opts.system_prompt,
        "lora": opts.lora,
        "min_pixels": opts.min_pixels,
        "max_pixels": opts.max_pixels,
    }


def _existing_samples(out: Path, ks: dict[str, int]) -> dict[tuple[str, str], list[dict]]:
    """Complete sample groups already on disk; rewrites the file when it had a cut-off line or a
    partial group (so appending continues from clean lines)."""
    path = out / SAMPLES
    if not path.is_file():
        return {}
    rows, dropped = read_jsonl(path, tolerate_cut=True)
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(str(row.get("benchmark")), str(row.get("id")))].append(row)
    complete = {key: g for key, g in groups.items() if key[0] not in ks or len(g) >= ks[key[0]]}
    if dropped or len(complete) < len(groups):
        kept = [r for g in complete.values() for r in g]
        write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    return complete


def _check_config(out: Path, opts: RunOptions, settings: dict[str, dict], done: set[str]) -> dict:
    """The run config to save; a ``UserError`` when samples on disk were made differently."""
    path = out / RUN_CONFIG
    saved = read_json(path) if path.is_file() else {"model": opts.model, "benchmarks": {}}
    if done and saved.get("model") != opts.model:
        raise UserError(f"{out} holds samples of model {saved.get('model')!r}, not {opts.model!r}; "
                        f"use another --output or --overwrite")
    for name in done:
        old = saved["benchmarks"].get(name)
        if old is not None and old != settings[name]:
            diff = ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in settings[name].items() if old.get(k) != v)
            raise UserError(f"{out} holds {name} samples made with other settings ({diff}); "
                            f"use another --output or --overwrite")
    saved["model"] = opts.model
    saved["benchmarks"].update(settings)
    return saved


def _model_config(opts: RunOptions) -> Any:
    from mhpo_vl.config import ModelConfig

    kwargs = {k: v for k, v in {"min_pixels": opts.min_pixels, "max_pixels": opts.max_pixels}.items() if v}
    cfg = ModelConfig(name_or_path=opts.model, dtype=opts.dtype, **kwargs)
    cfg.validate("model")
    return cfg


def _load_model(opts: RunOptions) -> tuple[Any, Any]:
    import torch
    from transformers.utils import logging as hf_logging

    from mhpo_vl.models import load_policy, load_processor

    cfg = _model_config(opts)
    if not opts.progress:
        hf_logging.disable_progress_bar()
    model = load_policy(cfg)
    processor = load_processor(cfg)
    if opts.lora:
        from peft import PeftModel

        if not Path(opts.lora, "adapter_config.json").is_file():
            raise UserError(f"--lora: no adapter_config.json in {opts.lora}")
        model = PeftModel.from_pretrained(model, opts.lora).merge_and_unload()
    device = opts.device if opts.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), processor


def _load_vllm(opts: RunOptions, max_model_len: int) -> tuple[Any, Any, Any]:
    """(None or the merged LoRA model, processor, a vLLM backend on --model): generation runs in vLLM.

    With --lora the adapter is merged on the HF model and its weights are pushed into the engine.
    """
    from mhpo_vl.config import VLLMConfig
    from mhpo_vl.models import load_processor
    from mhpo_vl.rollout.vllm import VLLMRolloutBackend
    from mhpo_vl.rollout.weights import engine_weights

    cfg = _model_config(opts)
    processor = load_processor(cfg)
    backend = VLLMRolloutBackend(opts.model, processor, VLLMConfig(), max_model_len=max_model_len, seed=opts.seed,
                                 dtype=opts.dtype, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
    model = None
    if opts.lora:
        model, _ = _load_model(dataclasses.replace(opts, device="cpu"))
        backend.sync_weights(engine_weights(model.state_dict().items(), model, only_trainable=False))
    return model, processor, backend


def run(opts: RunOptions) -> dict:
    """Run (or resume) the evaluation described by ``opts``; returns the results dict."""
    check_model_paths(opts.model, opts.lora)
    if opts.backend == "vllm":
        check_vllm_model(opts.model)
    specs = [get_benchmark(name, opts.extra_specs) for name in opts.benchmarks]
    if len({s.name for s in specs}) < len(specs):
        raise UserError("--benchmarks: a benchmark is listed twice")
    data = {s.name: load_records(s, data_dir=opts.data_dir, limit=opts.limit) for s in specs}
    settings = {s.name: generation_settings(s, opts) for s in specs}
    out = opts.output
    if opts.overwrite:
        for name in (SAMPLES, RESULTS, "results.md", RUN_CONFIG):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    existing = _existing_samples(out, {name: st["n_samples"] for name, st in settings.items()})
    done_names = {b for b, _ in existing}
    write_json(out / RUN_CONFIG, _check_config(out, opts, settings, done_names & set(settings)))

    todo = {s.name: [r for r in data[s.name] if (s.name, r["id"]) not in existing] for s in specs}
    model = processor = judge = backend = None
    if any(todo.values()):
        if opts.backend == "vllm":
            longest = max(settings[name]["max_new_tokens"] for name, rows in todo.items() if rows)
            model, processor, backend = _load_vllm(opts, opts.max_prompt_tokens + longest)
        else:
            model, processor = _load_model(opts)
        judge = LocalJudge(opts.judge_model) if opts.judge_model else None
    import torch

    results: dict = {}
    for spec in specs:
        name, st = spec.name, settings[spec.name]
        if todo[name]:
            torch.manual_seed(opts.seed)
            protocol, by_id = get_protocol(spec.protocol.name), {r["id"]: r for r in data[name]}
            evaluate(model, processor, todo[name], n_samples=st["n_samples"], temperature=st["temperature"],
                     top_p=st["top_p"], max_new_tokens=st["max_new_tokens"], batch_size=opts.batch_size,
                     template=resolve_template(st["template"]), system_prompt=st["system_prompt"],
                     max_prompt_tokens=opts.max_prompt_tokens,
                     extractor=benchmark_extractor(spec, judge), backend=backend, extract=opts.extract,
                     on_batch=lambda rows, name=name, protocol=protocol, by_id=by_id: append_jsonl(
                         out / SAMPLES, [{"benchmark": name, **r} for r in apply_protocol(protocol, rows, by_id)]),
                     progress=opts.progress, desc=name)
            existing = _existing_samples(out, {n: s["n_samples"] for n, s in settings.items()})
        samples = [s for r in data[name] for s in existing.get((name, r["id"]), [])[: st["n_samples"]]]
        _, metrics = benchmark_metrics(spec, samples, {r["id"]: r for r in data[name]})
        metrics.update({"response_length_unit": "tokens", "settings": st,
                        "data_dir": str(Path(opts.data_dir).resolve()) if opts.data_dir else None})
        extra = {"judge": judge.info()} if judge is not None else None
        results = update_results(out, opts.model, {name: metrics}, extra)
    return results

