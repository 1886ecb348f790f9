"""`make bench`: seconds per RL step, mhpo-vl vs TRL's GRPOTrainer, measured in one run.

Both sides train the SAME tiny Qwen2-VL model (`mhpo-vl tiny-model --arch qwen2_vl`, loaded by the same
code with the same frozen vision tower) on the SAME prepared data (the tiny recipe's easy-vqa task),
with the tiny CPU recipe's batch (prompts x G), max new tokens, temperature, learning rate, grad clip,
reward (mhpo_vl's verifiers) and prompt template; one optimizer step per rollout batch, no KL.
A step is everything from sampling to the optimizer step. The two trainers take turns, one step
each (mhpo-vl's step runs inside a TRL callback, outside TRL's timed interval), so both see the same
machine load; the table shows medians over the measured pairs after warm-up and the median of the
per-pair ratios, which is the number to quote on a shared machine.

    python scripts/bench_step.py [--steps 10 --warmup 3 --out runs/bench/bench_step.json]

Needs the `bench` extra (`pip install -e ".[bench]"`, i.e. trl). Exit codes: 0 done, 1 TRL could not
run (the reason is printed), 2 TRL is not installed, 3 the ratio is under --require-ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "tiny_cpu_mhpo.yaml"),
                        help="recipe whose rollout/trainer settings both sides use (default: tiny_cpu_mhpo.yaml)")
    parser.add_argument("--steps", type=int, default=10, help="measured steps per side (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured steps first (default 3)")
    parser.add_argument("--n-data", type=int, default=512, help="easy-vqa prompts to prepare (default 512)")
    parser.add_argument("--workdir", help="where the model, data and runs go (default: a temp dir)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "bench_step.json"),
                        help="JSON results file (default runs/bench/bench_step.json)")
    parser.add_argument("--require-ratio", type=float, default=0.0,
                        help="exit 3 when TRL's s/step divided by mhpo-vl's is below this (default: report only)")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- shared setup


def image_side(recipe: str) -> int:
    """The square image side the recipe's fixed pixel count implies (e.g. 7056 -> 84), else 0 (easy-vqa's 64)."""
    from mhpo_vl.config import load_config

    model = load_config(recipe).model
    side = math.isqrt(model.max_pixels)
    return side if model.min_pixels == model.max_pixels == side * side else 0


def prepare(workdir: Path, n_data: int, side: int) -> tuple[Path, Path]:
    """Build the tiny Qwen2-VL model and the easy-vqa prepared data at ``side`` px (both offline)."""
    from mhpo_vl.models import build_tiny_model

    model_dir = build_tiny_model("qwen2_vl", workdir / "model", seed=0)
    data_dir = workdir / "data"
    cmd = [sys.executable, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--n", str(n_data),
           "--image-size", str(side), "--split", "train", "--output", str(data_dir)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return model_dir, data_dir


def bench_config(recipe: str, model_dir: Path, data_dir: Path, workdir: Path):
    from mhpo_vl.config import load_config

    return load_config(recipe, [
        f"model.name_or_path={model_dir}", f"data.train_dir={data_dir}", "data.train_split=train",
        "data.eval_dir=", f"trainer.output_dir={workdir / 'mhpo_run'}", "trainer.max_steps=100000",
        "trainer.eval_every=0", "algo.kl_coef=0", "logging.progress_bar=false", "logging.plots=false",
    ])


# ----------------------------------------------------------------------------- mhpo-vl


def time_mhpo(trainer: Any, n: int) -> tuple[list[float], list[float]]:
    """Wall seconds and mean response length of ``n`` RL steps of an RLTrainer."""
    times, lengths = [], []
    for _ in range(n):
        start = time.perf_counter()
        metrics = trainer.train_step()
        times.append(time.perf_counter() - start)
        lengths.append(metrics["response_length/mean"])
        trainer.step += 1
    return times, lengths


# ----------------------------------------------------------------------------- TRL


def trl_dataset(cfg: Any) -> Any:
    """The prepared records as TRL's conversational multimodal rows (same template, images, answers)."""
    from datasets import Dataset

    from mhpo_vl.data import PromptDataset
    from mhpo_vl.data.collator import load_template
    from mhpo_vl.data.images import load_image

    template = load_template(cfg.data.prompt_template)
    rows = []
    for r in PromptDataset(cfg.data.train_dir, cfg.data.train_split).records:
        messages = [{"role": "system", "content": cfg.data.system_prompt}] if cfg.data.system_prompt else []
        messages.append({"role": "user", "content": template.replace("{prompt}", str(r["prompt"]))})
        rows.append({"prompt": messages, "images": [load_image(p, r["image_root"], r["id"]) for p in r["images"]],
                     "answer": str(r["answer"]), "answer_type": r["answer_type"], "choices": r.get("choices") or []})
    return Dataset.from_list(rows)


def trl_reward(cfg: Any):
    """The recipe's reward through mhpo_vl's verifiers, in TRL's reward-function signature."""
    from mhpo_vl.rewards import combine

    scorer = combine(cfg.reward.components, cfg.reward.options)

    def reward(completions: list, answer: list, answer_type: list, choices: list, completion_ids: list,
               **_: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        fields = [{"answer_type": t, "choices": c or None, "response_length": len(ids)}
                  for t, c, ids in zip(answer_type, choices, completion_ids)]
        return scorer(texts, answer, fields).total

    reward.__name__ = "mhpo_vl_reward"
    return reward


def time_trl(cfg: Any, workdir: Path, n: int, between: Callable[[], None]) -> tuple[list[float], list[float]]:
    """Wall seconds of ``n`` optimizer steps of TRL's GRPOTrainer (from the end of one to the end of the
    next, data loading and logging included) and TRL's mean completion lengths. ``between()`` runs after
    each TRL step, outside the timed intervals."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from mhpo_vl.models import load_policy, load_processor

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.last = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.last)
            between()
            self.last = time.perf_counter()

    r, t = cfg.rollout, cfg.trainer
    args = GRPOConfig(
        output_dir=str(workdir / "trl_run"), per_device_train_batch_size=r.prompts_per_step * r.group_size,
        gradient_accumulation_steps=1, num_generations=r.group_size, max_completion_length=r.max_new_tokens,
        temperature=r.temperature, top_p=r.top_p, top_k=r.top_k, learning_rate=t.lr, lr_scheduler_type="constant",
        max_grad_norm=t.grad_clip, beta=0.0, num_iterations=1, max_steps=n, logging_steps=1,
        save_strategy="no", report_to="none", use_cpu=True, bf16=False, fp16=False, seed=t.seed,
        dataloader_num_workers=0, disable_tqdm=True, log_completions=False,
        gradient_checkpointing=cfg.model.gradient_checkpointing,  # TRL defaults to True; match the recipe
    )
    timer = StepTimer()
    trainer = GRPOTrainer(model=load_policy(cfg.model), reward_funcs=trl_reward(cfg), args=args,
                          train_dataset=trl_dataset(cfg), processing_class=load_processor(cfg.model),
                          callbacks=[timer])
    trainer.remove_callback(PrinterCallback)  # TRL's per-step log dicts would flood the output
    trainer.train()
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    return timer.times, lengths


# ----------------------------------------------------------------------------- main


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import trl
    except ImportError:
        print("bench_step: TRL is not installed; run `pip install -e \".[bench]\"` (or `make bench`)", file=sys.stderr)
        return 2
    import torch
    import transformers

    from mhpo_vl.trainer.rl import RLTrainer

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mhpo-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir, data_dir = prepare(workdir, args.n_data, image_side(args.recipe))
    cfg = bench_config(args.recipe, model_dir, data_dir, workdir)
    r = cfg.rollout
    versions = (f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
                f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    load_before = os.getloadavg()[0]
    print(f"bench: tiny qwen2_vl, {r.prompts_per_step} prompts x G={r.group_size}, {r.max_new_tokens} new tokens, "
          f"{args.warmup} warm-up + {args.steps} measured steps per side; {versions}", flush=True)

    mhpo = RLTrainer(cfg)
    time_mhpo(mhpo, args.warmup)
    mhpo_times: list[float] = []
    mhpo_lengths: list[float] = []

    def mhpo_step() -> None:
        seconds, lengths = time_mhpo(mhpo, 1)
        mhpo_times.extend(seconds)
        mhpo_lengths.extend(lengths)

    try:
        trl_times, trl_lengths = time_trl(cfg, workdir, args.warmup + args.steps, mhpo_step)
    except Exception as exc:  # report any TRL failure with its reason, then exit non-zero
        traceback.print_exc()
        print(f"bench_step: TRL GRPOTrainer could not run on this setup ({versions}): "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    w = args.warmup
    mhpo_m, trl_m = mhpo_times[w:], trl_times[w:]
    pair_ratios = [t / m for t, m in zip(trl_m, mhpo_m)]
    mhpo_s, trl_s, ratio = _median(mhpo_m), _median(trl_m), _median(pair_ratios)
    result = {
        "setup": {"model": "tiny qwen2_vl", "prompts_per_step": r.prompts_per_step, "group_size": r.group_size,
                  "max_new_tokens": r.max_new_tokens, "warmup": w, "steps": args.steps, "versions": versions},
        "mhpo_vl": {"median_s_per_step": mhpo_s, "min_s_per_step": min(mhpo_m), "steps": mhpo_m,
                    "mean_response_length": statistics.mean(mhpo_lengths[w:])},
        "trl_grpo": {"median_s_per_step": trl_s, "min_s_per_step": min(trl_m), "steps": trl_m,
                     "mean_response_length": statistics.mean(trl_lengths[w:] or trl_lengths)},
        "pair_ratios": pair_ratios,
        "speedup_trl_over_mhpo": ratio,
    }
    load = max(load_before, os.getloadavg()[0])
    result["setup"]["load_average_1min"] = load
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    rows = [("mhpo-vl", result["mhpo_vl"]), ("TRL GRPOTrainer", result["trl_grpo"])]
    print("\n| trainer | s/step (median) | s/step (min) | mean response tokens |\n|---|---|---|---|")
    for name, row in rows:
        print(f"| {name} | {row['median_s_per_step']:.3f} | {row['min_s_per_step']:.3f} | "
              f"{row['mean_response_length']:.2f} |")
    print(f"\nmhpo-vl is {ratio:.2f}x faster per RL step than TRL (median of {len(pair_ratios)} paired steps; "
          f"per-pair ratios {min(pair_ratios):.2f}-{max(pair_ratios):.2f}; DESIGN bar >= 2x: "
          f"{'met' if ratio >= 2 else 'NOT met'}); results in {out}")
    if load > (os.cpu_count() or 1) + 1:  # this benchmark alone adds about one per torch thread
        print(f"WARNING: the 1-minute load average reached {load:.1f} on {os.cpu_count()} cores: other processes "
              "competed for the CPU, so these timings are noisy; rerun on an idle machine", file=sys.stderr)
    return 3 if ratio < args.require_ratio else 0


if __name__ == "__main__":
    sys.exit(main())
