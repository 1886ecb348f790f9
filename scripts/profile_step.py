"""Where an mhpo-vl RL step spends its time: phase split and torch.profiler's top operators.

Same model, data and settings as `make bench` (scripts/bench_step.py) for one size, mhpo-vl only:

    python scripts/profile_step.py [--size tiny --max-new-tokens 128 --threads 1 --hf-decoder fast]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_step import SIZES, mhpo_step  # noqa: E402
from bench_support import IMAGE_SIDE, PHASES, bench_trainer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="tiny", choices=sorted(SIZES))
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--image-side", type=int, default=IMAGE_SIDE, help=f"image side in pixels (default {IMAGE_SIDE})")
    parser.add_argument("--hf-decoder", default="fast", choices=["fast", "generate"])
    parser.add_argument("--shared-prefix", default="true", choices=["true", "false"])
    parser.add_argument("--steps", type=int, default=2, help="profiled steps after one warm-up step")
    parser.add_argument("--rows", type=int, default=25, help="operators to list")
    args = parser.parse_args(argv)
    import torch
    from torch.profiler import profile, record_function

    torch.set_num_threads(args.threads)
    trainer, _ = bench_trainer(args.size, SIZES[args.size], args.max_new_tokens, "mhpo-profile-",
                               (f"rollout.hf_decoder={args.hf_decoder}", f"trainer.shared_prefix={args.shared_prefix}"),
                               side=args.image_side)
    mhpo_step(trainer)
    steps = []
    with profile() as prof:
        for _ in range(args.steps):
            with record_function("rl_step"):
                steps.append(mhpo_step(trainer))
    total = sum(s["total"] for s in steps)
    print(f"{args.size}, {args.max_new_tokens} new tokens, decoder={args.hf_decoder}, "
          f"shared_prefix={args.shared_prefix}: {total / len(steps):.3f} s/step (under the profiler)")
    for phase in PHASES:
        share = sum(s[phase] for s in steps) / total
        print(f"  {phase:17s} {share:6.1%}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
