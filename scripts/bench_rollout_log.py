"""Overhead of rollout logging on the RL step (tiny Qwen2.5-VL, CPU, offline; ~2-5 minutes).

    python scripts/bench_rollout_log.py [--blocks 3 --steps 4 --per-step 4]

One trainer, blocks of steps alternating logging off / on (logging.rollouts_every=1: every step, the
worst case; the default every 10 steps costs a tenth). An "on" block's wall time includes flushing the
writer thread, so work the writer does in the background is counted where it competes for the CPU.
Prints the training-thread cost (recorder + submit), the writer thread's time, and the end-to-end
ratio of wall time per step; writes the numbers as JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=3, help="off/on block pairs (default 3)")
    parser.add_argument("--steps", type=int, default=4, help="steps per block (default 4)")
    parser.add_argument("--per-step", type=int, default=4, help="logging.rollouts_per_step (default 4)")
    parser.add_argument("--prompts", type=int, default=8, help="rollout.prompts_per_step (default 8)")
    parser.add_argument("--group", type=int, default=8, help="rollout.group_size (default 8)")
    parser.add_argument("--tokens", type=int, default=32, help="rollout.max_new_tokens (default 32)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from data_prep.cli import main as prep
    from mhpo_vl.config import config_from_dict
    from mhpo_vl.models.tiny import build_tiny_model
    from mhpo_vl.trainer.rl import RLTrainer
    from mhpo_vl.trainer.rollout_log import rollout_logger_for

    work = Path(tempfile.mkdtemp(prefix="bench_rollout_log_"))
    model = build_tiny_model("qwen2_5_vl", work / "model", seed=0)
    prep(["synthetic", "--task", "easy_vqa", "--n", "64", "--split", "train", "--output", str(work / "data")])
    cfg = config_from_dict({
        "model": {"name_or_path": str(model), "min_pixels": 3136, "max_pixels": 3136},
        "data": {"train_dir": str(work / "data"), "prompt_template": "plain", "max_prompt_tokens": 64},
        "rollout": {"prompts_per_step": args.prompts, "group_size": args.group, "max_new_tokens": args.tokens},
        "trainer": {"output_dir": str(work / "run"), "max_steps": 10_000, "lr": 1e-4, "lr_schedule": "constant",
                    "mixed_precision": "no"},
        "logging": {"progress_bar": False, "plots": False, "rollouts_every": 1, "rollouts_per_step": args.per_step},
    })
    trainer = RLTrainer(cfg)
    trainer.rollout_log = None
    trainer.train_step()  # warm-up (first-call allocations, reward workers)
    off, on, main_thread, writer, step_times = [], [], [], [], []
    for _ in range(args.blocks):
        for logging_on in (False, True):
            logger = rollout_logger_for(cfg, trainer.run_dir, trainer.tokenizer, trainer.hparams, True) if logging_on else None
            trainer.rollout_log = logger
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step_times.append(trainer.train_step()["time/step"])
                trainer.step += 1
            if logger is not None:
                logger.close()
                main_thread.append(logger.main_seconds / args.steps)
                writer.append(logger.writer_seconds / args.steps)
            (on if logging_on else off).append((time.perf_counter() - t0) / args.steps)
    result = {
        "setup": {"prompts_per_step": args.prompts, "group_size": args.group, "max_new_tokens": args.tokens,
                  "rollouts_per_step": args.per_step, "rollouts_every": 1, "steps_per_block": args.steps,
                  "blocks": args.blocks},
        "seconds_per_step_off": statistics.median(off), "seconds_per_step_on": statistics.median(on),
        "end_to_end_overhead": statistics.median(on) / statistics.median(off) - 1.0,
        "training_thread_seconds_per_logged_step": statistics.median(main_thread),
        "training_thread_share": statistics.median(main_thread) / statistics.median(on),
        "writer_seconds_per_logged_step": statistics.median(writer),
        "bytes_per_logged_step": sum(p.stat().st_size for p in (work / "run" / "rollouts").glob("step_*.jsonl"))
        // max(1, len(list((work / "run" / "rollouts").glob("step_*.jsonl")))),
    }
    print(json.dumps(result, indent=2))
    print(f"rollout logging every step: training thread {1000 * result['training_thread_seconds_per_logged_step']:.1f} ms "
          f"per step ({100 * result['training_thread_share']:.2f}% of a step), writer thread "
          f"{1000 * result['writer_seconds_per_logged_step']:.0f} ms per step, end to end "
          f"{100 * result['end_to_end_overhead']:+.1f}% wall time per step (median of {args.blocks} blocks)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
