"""The ``synthetic`` source: options and dispatch to the shape tasks and easy-vqa."""

from __future__ import annotations

import argparse

from data_prep.errors import DataPrepError
from data_prep.sources.common import Source, SourceData
from data_prep.synthetic import easyvqa, tasks

TASK_NAMES = (*tasks.TASKS, "easy_vqa")


def _args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="count",
                        help=f"one of {', '.join(TASK_NAMES)}, or a comma list of shape tasks to mix "
                             "(e.g. count,largest_color) (default: %(default)s)")
    parser.add_argument("--n", type=int, default=1000, help="number of samples (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="base seed; each split uses its own stream (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=56,
                        help="square image side in pixels; use multiples of 28 for Qwen2/2.5-VL (56 -> 4 image "
                             "tokens) or 32 for Qwen3-VL (default: 56; easy_vqa keeps 64 when 0)")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="share of rendered shape images reserved for non-train splits (default: %(default)s)")


def _open(args: argparse.Namespace) -> SourceData:
    if args.n < 1:
        raise DataPrepError(f"--n must be >= 1, got {args.n}")
    if args.image_size != 0 and args.image_size < 28:
        raise DataPrepError(f"--image-size must be >= 28 (or 0 for easy_vqa's own 64), got {args.image_size}")
    if not 0.0 < args.test_fraction < 1.0:
        raise DataPrepError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    names = [name.strip() for name in args.task.split(",") if name.strip()]
    unknown = [name for name in names if name not in TASK_NAMES]
    if unknown or not names:
        raise DataPrepError(f"unknown --task {','.join(unknown) or args.task!r}; choose from {', '.join(TASK_NAMES)}")
    if "easy_vqa" in names:
        if len(names) > 1:
            raise DataPrepError("easy_vqa cannot be mixed with shape tasks; prepare it separately")
        return SourceData(easyvqa.generate(args.n, args.seed, args.split, args.image_size or None), None, args.n)
    if args.image_size == 0:
        raise DataPrepError("--image-size 0 is only for easy_vqa")
    return SourceData(tasks.generate(names, args.n, args.seed, args.split, args.image_size, args.test_fraction),
                      None, args.n)


SOURCE = Source("synthetic", "generated image tasks with exact answers (shapes, digits, easy-vqa)", _args, _open)
