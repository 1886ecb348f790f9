"""`make bench`: seconds per RL step, mhpo-vl vs TRL's GRPOTrainer, at realistic response lengths.

For each model size (``tiny``: the tiny Qwen2-VL, ~0.6M parameters; ``larger``: the same architecture
at ~25M, `mhpo_vl.models.MODEL_SIZES`) four trainers train their own copy of the SAME model on the SAME
prepared data (the tiny recipe's easy-vqa task and prompt template, with ``--image-side`` x ``--image-side``
images kept at that size by both processors: 448 px = 256 image tokens, prompts of ~272 tokens, a moderate
VLM prompt), with the same prompts x G, up to
``--max-new-tokens`` new tokens (a random model rarely samples EOS, so responses run to the limit or
stop earlier at random), temperature 1, no top-k/top-p, the same reward (mhpo_vl's verifiers), the
same loss aggregation (seq-mean-token-mean: TRL's loss_type="grpo"), learning rate, grad clip, no KL
and one optimizer step per rollout batch:

    trl         TRL GRPOTrainer with its defaults (gradient checkpointing on)
    trl_nockpt  TRL GRPOTrainer with gradient checkpointing off
    trl_vllm    TRL GRPOTrainer with its colocated vLLM engine, gradient checkpointing off (tried where vLLM is
                installed; left out, with the reason printed, when it fails here)
    mhpo_hf     mhpo-vl, rollout.backend=hf (its fast decoder)
    mhpo_vllm   mhpo-vl, rollout.backend=vllm (only when vLLM is installed in this interpreter)

A step is everything from sampling to the optimizer step. The trainers take turns, one step each, in
one process (the TRL trainers run in threads that hand control back after every step), so all see the
same machine load. After ``--warmup`` unmeasured rounds, each round gives paired ratios: R1 = trl /
mhpo_hf, R2 = trl_nockpt / mhpo_hf, R3 = (TRL's fastest configuration that ran) / mhpo_vllm; the printed ratios
are the medians over rounds. Per side it records seconds per step split into rollout (sampling, reward,
advantages), log-prob (extra no-grad forwards), forward-backward and optimizer (grad clip, step, weight
sync), response tokens per second, and the peak RSS over its steps (absolute, and the growth over the
RSS at the start of each step, after returning freed heap to the OS).

    python scripts/bench_step.py [--sizes tiny,larger --max-new-tokens 128 --image-side 448 --threads 1
                                  --out runs/bench/bench.json]

Needs the `bench` extra (trl). Exit codes: 0 done, 1 a trainer failed (the reason is printed), 2 TRL
is not installed, 3 a ratio is under the issue's bar (with --require).
"""

from __future__ import annotations

import argparse
import os
import sys

# Thread counts must be fixed before torch loads (OpenMP reads them once; threads inherit them).
_THREADS = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), None)
if _THREADS is None and "--threads" in sys.argv[:-1]:
    _THREADS = sys.argv[sys.argv.index("--threads") + 1]
os.environ["OMP_NUM_THREADS"] = _THREADS or "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_support import (  # noqa: E402
    IMAGE_SIDE,
    PHASES,
    ROOT,
    RssMeter,
    TrlRunner,
    let_trl_vllm_skip_video,
    median,
    prepare,
    restored_distributed_env,
    step_config,
    trl_args,
)

# Per size: prompts per step x G, warm-up and measured rounds (a larger-model round takes minutes on 2 cores).
# mhpo-vl trains in micro-batches of `micro` rows (gradients accumulated, one optimizer step per batch);
# TRL keeps its default (the whole batch in one forward).
SIZES = {"tiny": {"prompts": 16, "group": 8, "micro": 32, "warmup": 1, "steps": 5},
         "larger": {"prompts": 2, "group": 8, "micro": 8, "warmup": 1, "steps": 4}}
BARS = {"tiny": 1.5, "larger": 1.3}  # issue 15: ratio_vs_trl per size; nockpt > 1.0; vllm >= 2.0 for one size


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "tiny_cpu_mhpo.yaml"),
                        help="recipe whose data, template, lr and grad clip both sides use")
    parser.add_argument("--sizes", default="tiny,larger", help="comma-separated model sizes (tiny, larger)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="response budget (default 128)")
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads for every trainer (default 1)")
    parser.add_argument("--steps", type=int, help="measured rounds per size (default: per size, 5 / 4)")
    parser.add_argument("--warmup", type=int, help="unmeasured rounds first (default: 1)")
    parser.add_argument("--prompts", type=int, help="prompts per step (default: per size, 16 / 2)")
    parser.add_argument("--micro-batch", type=int, help="mhpo-vl's micro-batch rows (default: per size, 32 / 8)")
    parser.add_argument("--image-side", type=int, default=IMAGE_SIDE,
                        help=f"square image side in pixels, kept as is on both sides (default {IMAGE_SIDE}: "
                             f"{(IMAGE_SIDE // 28) ** 2} image tokens; 84 gives the tiny recipe's 9)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="training forward/backward of every trainer: fp32, or bf16 autocast over float32 weights "
                             "(TRL's bf16=True, mhpo-vl's trainer.mixed_precision=bf16); generation stays float32")
    parser.add_argument("--engine-dtype", choices=("auto", "bfloat16", "float32"), default="auto",
                        help="weights of mhpo-vl's vLLM engine (rollout.vllm.dtype; auto = the model's float32)")
    parser.add_argument("--engine-compile", action="store_true",
                        help="run mhpo-vl's vLLM engine compiled on CPU (rollout.vllm.cpu_compile; start-up not timed)")
    parser.add_argument("--no-vllm", metavar="REASON", help="skip the vLLM trainer and print REASON")
    parser.add_argument("--no-trl-vllm", action="store_true",
                        help="do not try TRL's colocated vLLM mode as a TRL configuration for R3")
    parser.add_argument("--workdir", help="where the models, data and runs go (default: a temp dir)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "bench.json"), help="JSON results file")
    parser.add_argument("--require", action="store_true", help="exit 3 when a ratio misses the issue's bar")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be >= 1 (the ratios are medians over measured rounds)")
    return args


def vllm_status(args: argparse.Namespace) -> str | None:
    """None when the vLLM trainer can run here, else the reason it is skipped."""
    if args.no_vllm:
        return args.no_vllm
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        return f"vLLM is not installed in this interpreter ({exc}); `make bench` uses .venv-vllm when `make setup-vllm` works"
    return None


def mhpo_step(trainer: Any) -> dict[str, float]:
    """One mhpo-vl RL step: wall seconds split into the phases, tokens, mean response length."""
    start = time.perf_counter()
    m = trainer.train_step()
    total = time.perf_counter() - start
    trainer.step += 1
    rollout = m["time/rollout"] + m["time/reward"]
    optimizer = m["time/optimizer"] + m["time/weight_sync"]
    forward_backward = m["time/update"] - m["time/logprob"] - optimizer
    n = trainer.cfg.rollout.prompts_per_step * trainer.cfg.rollout.group_size
    return {"total": total, "rollout": rollout, "logprob": m["time/logprob"], "forward_backward": forward_backward,
            "optimizer": total - rollout - m["time/logprob"] - forward_backward,
            "tokens": m["response_length/mean"] * n, "length": m["response_length/mean"]}


def summarize(steps: list[dict[str, float]], rss: list[tuple[float, float]]) -> dict[str, Any]:
    total = [s["total"] for s in steps]
    return {
        "median_s_per_step": median(total), "min_s_per_step": min(total), "steps_s": total, "steps": steps,
        "phases_median_s": {p: median([s[p] for s in steps]) for p in PHASES},
        "tokens_per_s": median([s["tokens"] / s["total"] for s in steps]),
        "mean_response_length": statistics.mean(s["length"] for s in steps),
        "peak_rss_mb": max(r[0] for r in rss), "peak_rss_step_growth_mb": max(r[1] for r in rss),
    }


def run_size(size: str, args: argparse.Namespace, workdir: Path, vllm_reason: str | None) -> dict[str, Any]:
    from mhpo_vl.trainer.rl import RLTrainer

    plan = dict(SIZES[size])
    plan.update({k: v for k, v in (("steps", args.steps), ("warmup", args.warmup), ("prompts", args.prompts),
                                                 ("micro", args.micro_batch)) if v is not None})
    model_dir, data_dir, params = prepare(workdir / size, size, side=args.image_side)
    cfg = step_config(args.recipe, model_dir, data_dir, workdir / size, side=args.image_side, prompts=plan["prompts"],
                      group=plan["group"], max_new_tokens=args.max_new_tokens, micro_batch=plan["micro"],
                      precision=args.precision)
    bf16 = args.precision == "bf16"
    rounds = plan["warmup"] + plan["steps"]
    print(f"\n== size={size}: qwen2_vl, {params / 1e6:.1f}M parameters, {plan['prompts']} prompts x G={plan['group']}, "
          f"{args.image_side}x{args.image_side} images, up to {args.max_new_tokens} new tokens, "
          f"{plan['warmup']} warm-up + {plan['steps']} measured rounds",
          flush=True)
    contenders: dict[str, Any] = {}
    for name, ckpt in (("trl", True), ("trl_nockpt", False)):
        args_ = trl_args(cfg, workdir / size / name, rounds, gradient_checkpointing=ckpt, bf16=bf16)
        contenders[name] = TrlRunner(args_, cfg)
    trl_vllm_reason = "not tried (--no-trl-vllm)" if args.no_trl_vllm else vllm_reason
    if trl_vllm_reason is None:
        try:
            let_trl_vllm_skip_video()
            with restored_distributed_env():
                contenders["trl_vllm"] = TrlRunner(trl_args(cfg, workdir / size / "trl_vllm", rounds,
                                                            gradient_checkpointing=False, use_vllm=True, bf16=bf16),
                                                   cfg)
        except Exception as exc:  # the peer's own failure: report it and compare with what runs
            trl_vllm_reason = _short(exc)
    contenders["mhpo_hf"] = RLTrainer(cfg)
    if vllm_reason is None:
        vcfg = step_config(args.recipe, model_dir, data_dir, workdir / size, side=args.image_side,
                           prompts=plan["prompts"], group=plan["group"], max_new_tokens=args.max_new_tokens,
                           micro_batch=plan["micro"], backend="vllm", precision=args.precision,
                           engine_dtype=args.engine_dtype, engine_compile=args.engine_compile)
        contenders["mhpo_vllm"] = RLTrainer(vcfg)
    meter = RssMeter()
    steps: dict[str, list[dict[str, float]]] = {k: [] for k in contenders}
    rss: dict[str, list[tuple[float, float]]] = {k: [] for k in contenders}
    try:
        for r in range(rounds):
            for name, c in list(contenders.items()):
                with meter.window() as window:
                    try:
                        step = c.step() if isinstance(c, TrlRunner) else mhpo_step(c)
                    except RuntimeError as exc:
                        if name != "trl_vllm":
                            raise
                        trl_vllm_reason = _short(exc)
                        c.close()
                        del contenders[name], steps[name], rss[name]
                        continue
                if r >= plan["warmup"]:
                    steps[name].append(step)
                    rss[name].append((window.peak_mb, window.growth_mb))
            print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]['total']:.2f}s" if r >= plan["warmup"]
                                                             else k for k, v in steps.items()), flush=True)
    finally:
        meter.close()
        for c in contenders.values():
            if isinstance(c, TrlRunner):
                c.close()
    sides = {name: summarize(steps[name], rss[name]) for name in contenders}
    pair = {name: [t["total"] for t in steps[name]] for name in contenders}
    if trl_vllm_reason:
        print(f"  trl_vllm (TRL use_vllm=True, colocate) did not run here: {trl_vllm_reason}", flush=True)
    fastest_trl = min((k for k in ("trl", "trl_nockpt", "trl_vllm") if k in sides),
                      key=lambda k: sides[k]["median_s_per_step"])
    ratios = {"ratio_vs_trl": [a / b for a, b in zip(pair["trl"], pair["mhpo_hf"])],
              "ratio_vs_trl_nockpt": [a / b for a, b in zip(pair["trl_nockpt"], pair["mhpo_hf"])]}
    if "mhpo_vllm" in pair:
        ratios["ratio_vllm_vs_trl"] = [a / b for a, b in zip(pair[fastest_trl], pair["mhpo_vllm"])]
    return {"size": size, "model": f"qwen2_vl ({size})", "parameters": params, "prompts_per_step": plan["prompts"],
            "group_size": plan["group"], "max_new_tokens": args.max_new_tokens, "precision": args.precision,
            "vllm_engine_dtype": args.engine_dtype, "vllm_engine_compile": args.engine_compile, "warmup_rounds": plan["warmup"],
            "measured_rounds": plan["steps"], "fastest_trl": fastest_trl, "sides": sides,
            "pair_ratios": ratios, "ratios": {k: median(v) for k, v in ratios.items()},
            "vllm_skipped": vllm_reason, "trl_vllm_skipped": trl_vllm_reason}


def _short(exc: BaseException) -> str:
    """An exception as one line: its own message, or its cause's (TrlRunner wraps the thread's error)."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) < 300 else text[:297] + "..."


def print_table(result: dict[str, Any]) -> None:
    print(f"\n| size={result['size']} | s/step (median) | rollout | log-prob | fwd-bwd | optimizer | tokens/s | "
          "mean resp. tokens | peak RSS MB (step growth) |\n|---|---|---|---|---|---|---|---|---|")
    for name, s in result["sides"].items():
        ph = s["phases_median_s"]
        print(f"| {name} | {s['median_s_per_step']:.3f} | {ph['rollout']:.3f} | {ph['logprob']:.3f} | "
              f"{ph['forward_backward']:.3f} | {ph['optimizer']:.3f} | {s['tokens_per_s']:.0f} | "
              f"{s['mean_response_length']:.1f} | {s['peak_rss_mb']:.0f} ({s['peak_rss_step_growth_mb']:.0f}) |")
    for k, v in result["pair_ratios"].items():
        print(f"{k}: median {median(v):.2f} over {len(v)} paired rounds (range {min(v):.2f}-{max(v):.2f})")


def size_line(result: dict[str, Any]) -> str:
    r = result["ratios"]
    vllm = f"{r['ratio_vllm_vs_trl']:.2f}" if "ratio_vllm_vs_trl" in r else "NA"
    return (f"size={result['size']} ratio_vs_trl={r['ratio_vs_trl']:.2f} "
            f"ratio_vs_trl_nockpt={r['ratio_vs_trl_nockpt']:.2f} ratio_vllm_vs_trl={vllm}")


def bars_met(results: list[dict[str, Any]]) -> bool:
    ok = all(r["ratios"]["ratio_vs_trl"] >= BARS.get(r["size"], 1.0) and r["ratios"]["ratio_vs_trl_nockpt"] > 1.0
             for r in results)
    return ok and any(r["ratios"].get("ratio_vllm_vs_trl", 0.0) >= 2.0 for r in results)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import trl
    except ImportError:
        print("bench_step: TRL is not installed; run `pip install -e \".[bench]\"` (or `make bench`)", file=sys.stderr)
        return 2
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        print(f"bench_step: unknown size(s) {unknown}; choose from {', '.join(SIZES)}", file=sys.stderr)
        return 1
    vllm_reason = vllm_status(args)
    if vllm_reason:
        print(f"bench_step: ratio_vllm_vs_trl=NA: {vllm_reason}", flush=True)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mhpo-bench-"))
    versions = (f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
                f"{args.threads} thread(s), {os.cpu_count()} cores, {platform.processor() or platform.machine()}")
    print(f"bench: {versions}; load average before {os.getloadavg()}", flush=True)
    load_before = os.getloadavg()
    results = []
    for size in sizes:
        try:
            results.append(run_size(size, args, workdir, vllm_reason))
        except Exception as exc:  # report any trainer failure with its reason, then exit non-zero
            traceback.print_exc()
            print(f"bench_step: size={size} could not run ({versions}): {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print_table(results[-1])
    load_after = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"setup": {"versions": versions, "threads": args.threads, "recipe": args.recipe,
                                         "image_side": args.image_side,
                                         "load_average_before": load_before, "load_average_after": load_after},
                               "sizes": results}, indent=2))
    print(f"\nload average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min); results in {out}\n")
    for r in results:
        print(size_line(r))
    if args.require and not bars_met(results):
        print("bench_step: a ratio is under issue 15's bar", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
