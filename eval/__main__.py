"""Command line: ``python -m eval {run,score,compare,list}`` (also installed as ``mhpo-eval``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from mhpo_vl.cli_utils import OneLineErrorParser, non_negative_float, positive_int, run_user_command

_Parser = OneLineErrorParser
_positive_int = positive_int
_non_negative_float = non_negative_float


def _add_benchmark_file(p: argparse.ArgumentParser) -> None:
    p.add_argument("--benchmark-file", action="append", default=[], metavar="YAML",
                   help="a user benchmark definition (repeatable); its 'name' can then be used like a "
                        "shipped one. A YAML path also works directly in --benchmarks/--benchmark.")


def _add_extract(p: argparse.ArgumentParser) -> None:
    from mhpo_vl.rewards.modes import EXTRACT_MODES

    p.add_argument("--extract", choices=EXTRACT_MODES, default="tags",
                   help="how the final answer is read: tags (<answer>, else \\boxed, else a short bare reply; "
                        "default), boxed, last_number (models that answer in prose), full_text")


def _add_judge(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge-model", metavar="PATH",
                   help="optional local LLM that reads the final answer from responses the rules cannot "
                        "parse (off by default; recorded in results.json)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mhpo-eval", description="Score models on text and vision-language reasoning "
                     "benchmarks with deterministic verifiers (no paid LLM judge).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="generate with a model and score (resumable)",
                         description="Generate responses with a model on benchmarks and score them. "
                         "Rerun the same command to continue an interrupted run.")
    run.add_argument("--model", required=True, help="model directory or hub id")
    run.add_argument("--benchmarks", required=True,
                     help="comma-separated benchmark names or YAML files (see `mhpo-eval list`)")
    run.add_argument("--output", required=True, type=Path, help="output directory")
    run.add_argument("--data-dir", help="folder holding DIR/<benchmark>/ with the files as published "
                     "(default: the HF hub / cache)")
    run.add_argument("--limit", type=_positive_int, help="only the first N prompts of each benchmark")
    run.add_argument("--n-samples", type=_positive_int, help="samples per prompt, k (default: per benchmark)")
    run.add_argument("--temperature", type=_non_negative_float,
                     help="sampling temperature; 0 = greedy (default: per benchmark)")
    run.add_argument("--top-p", type=float, help="nucleus sampling p (default: per benchmark)")
    run.add_argument("--max-new-tokens", type=_positive_int, help="response token limit (default: per benchmark)")
    run.add_argument("--batch-size", type=_positive_int, default=8, help="prompts per generation batch (default 8)")
    run.add_argument("--template", help="prompt template: a name in mhpo_vl/templates (think_answer, boxed, "
                     "answer_only, plain) or a file (default: per benchmark, else think_answer)")
    run.add_argument("--system-prompt", help="system message (default: none)")
    run.add_argument("--lora", metavar="PATH", help="a LoRA adapter directory (peft) to apply to --model")
    run.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                     help="model weights dtype (default auto)")
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    run.add_argument("--min-pixels", type=_positive_int, help="smallest image size in pixels (VLMs)")
    run.add_argument("--max-pixels", type=_positive_int, help="largest image size in pixels (VLMs)")
    run.add_argument("--max-prompt-tokens", type=_positive_int, default=8192,
                     help="longest prompt in tokens, image tokens included; longer ones are an error (default 8192)")
    run.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    run.add_argument("--backend", choices=["hf", "vllm"], default="hf",
                     help="generation engine: hf (transformers generate) or vllm (needs `make setup-vllm`; "
                          "--device is then vLLM's choice) (default hf)")
    run.add_argument("--overwrite", action="store_true", help="discard earlier results in --output")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_benchmark_file(run)
    _add_judge(run)
    _add_extract(run)

    score = sub.add_parser("score", help="score existing responses without a model",
                           description="Score responses from any system (JSONL lines with 'id' and "
                           "'response'; several lines per id = several samples).")
    score.add_argument("--benchmark", required=True, help="a benchmark name or YAML file")
    score.add_argument("--data", "--data-dir", dest="data",
                       help="the benchmark data: a folder holding <benchmark>/, the benchmark's own folder, "
                            "or a data file (default: the HF hub / cache)")
    score.add_argument("--responses", required=True, type=Path, help="JSONL file of {id, response}")
    score.add_argument("--output", required=True, type=Path, help="output directory")
    score.add_argument("--model-name", help="name recorded in results.json (default: the responses file name)")
    _add_benchmark_file(score)
    _add_judge(score)
    _add_extract(score)

    compare = sub.add_parser("compare", help="compare several output directories",
                             description="Print a markdown table of several runs side by side and save a "
                             "bar chart.")
    compare.add_argument("outputs", nargs="+", help="eval output directories (or results.json files)")
    compare.add_argument("--metric", default="accuracy",
                         help="metric to compare: accuracy, pass@k, avg@k, extraction_failure_rate (default accuracy)")
    compare.add_argument("--plot", type=Path, default=Path("compare.png"), help="PNG path (default compare.png)")

    view = sub.add_parser("view", help="write an HTML viewer of an output's samples",
                          description="Write a static, offline page of an output's samples: prompt, images, "
                          "extracted answer vs reference, filters per benchmark and subset; with --compare, "
                          "two outputs side by side on the same ids. Open OUT/index.html in a browser.")
    view.add_argument("output", type=Path, metavar="EVAL_DIR", help="an eval output directory")
    view.add_argument("--compare", type=Path, metavar="EVAL_DIR2", help="a second output to show side by side")
    view.add_argument("--data-dir", help="the benchmark data folder (as for run; default: the one recorded "
                      "in results.json)")
    view.add_argument("--out", type=Path, help="output directory (default EVAL_DIR/viewer)")
    _add_benchmark_file(view)

    lst = sub.add_parser("list", help="list the shipped benchmarks",
                         description="List the shipped benchmarks; --details NAME shows one benchmark's prompt "
                                     "template, answer extraction, scoring protocol, metrics, k and sources.")
    lst.add_argument("--details", metavar="NAME", help="a benchmark name or YAML file")
    _add_benchmark_file(lst)
    return parser


def _judge(path: Optional[str]):
    if not path:
        return None
    from eval.extractors import LocalJudge

    return LocalJudge(path)


def _cmd_run(args: argparse.Namespace) -> int:
    from eval.registry import load_user_files, parse_benchmark_list
    from eval.runner import RunOptions, run

    results = run(RunOptions(
        model=args.model, benchmarks=parse_benchmark_list(args.benchmarks), output=args.output,
        data_dir=args.data_dir, limit=args.limit, n_samples=args.n_samples, temperature=args.temperature,
        top_p=args.top_p, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, template=args.template,
        system_prompt=args.system_prompt, lora=args.lora, dtype=args.dtype, device=args.device,
        min_pixels=args.min_pixels, max_pixels=args.max_pixels, max_prompt_tokens=args.max_prompt_tokens,
        judge_model=args.judge_model, seed=args.seed, backend=args.backend, overwrite=args.overwrite, progress=not args.no_progress,
        extract=args.extract,
        extra_specs=load_user_files(args.benchmark_file)))
    from eval.report import render_markdown

    print(render_markdown(results))
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from eval.registry import get_benchmark, load_user_files
    from eval.score import score_file

    spec = get_benchmark(args.benchmark, load_user_files(args.benchmark_file))
    m = score_file(spec, data=args.data, responses=args.responses, output=args.output,
                   model_name=args.model_name, judge=_judge(args.judge_model), extract=args.extract)
    print(f"{spec.name}: accuracy {100 * m['accuracy']:.2f}% ({m['protocol']['name']} protocol; strict "
          f"{100 * m['accuracy_strict']:.2f}%) (n={m['n']}, k={m['k']}, pass@{m['k']} {100 * m['pass@k']:.2f}%) "
          f"-> {args.output / 'results.json'}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from eval.report import bar_chart, compare_table

    table, labels, values = compare_table(args.outputs, args.metric)
    bar_chart(labels, values, args.plot, args.metric)
    print(table)
    print(f"chart: {args.plot}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from eval.registry import get_benchmark, load_spec_file, load_user_files, shipped_benchmarks

    if args.details:
        from eval.details import describe

        print(describe(get_benchmark(args.details, load_user_files(args.benchmark_file))))
        return 0
    for name, path in shipped_benchmarks().items():
        spec = load_spec_file(path)
        print(f"{name:22s} k={spec.n_samples:<3d} {spec.description}")
    return 0


def _cmd_view(args: argparse.Namespace) -> int:
    from eval.registry import load_user_files
    from eval.view import view

    outputs = [args.output] + ([args.compare] if args.compare else [])
    page = view(outputs, args.out, data_dir=args.data_dir, extra_specs=load_user_files(args.benchmark_file))
    print(f"viewer written to {page} (open it in a browser; it is offline and self-contained)")
    return 0


COMMANDS = {"run": _cmd_run, "score": _cmd_score, "compare": _cmd_compare, "list": _cmd_list, "view": _cmd_view}


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point; returns the exit code (2 for a user mistake, reported as one line on stderr)."""
    args = build_parser().parse_args(argv)
    return run_user_command(COMMANDS[args.command], args, prog=f"mhpo-eval {args.command}",
                            interrupt_hint=" (rerun the same command to resume)")

if __name__ == "__main__":
    sys.exit(main())
