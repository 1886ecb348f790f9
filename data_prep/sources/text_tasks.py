"""Procedural text tasks from reasoning-gym (``images: []``), seeded with disjoint train/test streams."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

from data_prep.errors import DataPrepError
from data_prep.records import Candidate
from data_prep.seeding import split_seed
from data_prep.sources.common import Source, SourceData


def _args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="basic_arithmetic",
                        help="reasoning-gym dataset name, e.g. basic_arithmetic, chain_sum, leg_counting "
                             "(default: %(default)s)")
    parser.add_argument("--n", type=int, default=1000, help="number of problems (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; each split uses its own stream")


def _open(args: argparse.Namespace) -> SourceData:
    try:
        import reasoning_gym
    except ImportError:
        raise DataPrepError("reasoning_gym needs `pip install reasoning-gym` (extra: mhpo-vl[data])") from None
    if args.n < 1:
        raise DataPrepError(f"--n must be >= 1, got {args.n}")
    try:
        dataset = reasoning_gym.create_dataset(args.task, size=args.n, seed=split_seed(args.seed, args.split))
    except Exception as exc:  # noqa: BLE001 - unknown task names raise various errors
        raise DataPrepError(f"reasoning-gym task {args.task!r}: {exc}") from None

    def candidates() -> Iterator[Candidate]:
        for i in range(args.n):
            item = dataset[i]
            meta: dict[str, Any] = {"task": args.task,
                                    "task_metadata": json.loads(json.dumps(item.get("metadata", {}), default=str))}
            fields = {"prompt": item["question"], "answer": item["answer"], "images": [], "meta": meta}
            yield Candidate({"index": i}, fields=fields, default_id=f"{args.task}-{args.split}-{i}")

    return SourceData(candidates(), None, args.n)


SOURCES = [Source("reasoning_gym", "procedural text problems from reasoning-gym (text only)", _args, _open)]
