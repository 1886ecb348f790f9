"""Procedural text tasks from reasoning-gym (``images: []``), seeded with disjoint train/test streams.

    python -m data_prep reasoning_gym --task chain_sum --task-args min_terms=3,max_terms=3,max_digits=1 \
        --n 250 --unique --split test --output data/chain_sum
    python -m data_prep reasoning_gym --task chain_sum --task-args min_terms=3,max_terms=3,max_digits=1 \
        --n 2000 --exclude-split test --output data/chain_sum

Each split draws from its own seed stream. Small task spaces repeat questions, so a held-out split
should use ``--unique`` and the train split ``--exclude-split test``: generated questions whose text is
already in that split are dropped (rejects ``question_in_other_split`` / ``duplicate_question`` in
summary.json) and more are drawn until ``--n`` records are written.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from data_prep.errors import DataPrepError, Reject
from data_prep.records import Candidate, rejected
from data_prep.seeding import split_seed
from data_prep.sources.common import Source, SourceData

#: Problems drawn per requested record at most, before giving up on finding new questions.
MAX_DRAWS_PER_RECORD = 50


def parse_task_args(text: str | None) -> dict[str, Any]:
    """``"min_terms=2,max_digits=1,allow_negation=true"`` -> ``{"min_terms": 2, ...}`` (YAML scalars).

    >>> parse_task_args("min_terms=2,max_digits=1,allow_negation=true,name=x")
    {'min_terms': 2, 'max_digits': 1, 'allow_negation': True, 'name': 'x'}
    """
    out: dict[str, Any] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise DataPrepError(f"--task-args: {part.strip()!r} must look like name=value (e.g. min_terms=2)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw.strip()
        out[key] = value
    return out


def _args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="basic_arithmetic",
                        help="reasoning-gym dataset name, e.g. basic_arithmetic, chain_sum, leg_counting "
                             "(default: %(default)s)")
    parser.add_argument("--task-args", default="",
                        help="the task's config, comma-separated name=value, e.g. "
                             "min_terms=2,max_terms=2,min_digits=1,max_digits=1 (default: the task's own)")
    parser.add_argument("--n", type=int, default=1000, help="number of records to write (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; each split uses its own stream")
    parser.add_argument("--unique", action="store_true", help="drop questions already written to this split")
    parser.add_argument("--exclude-split", action="append", default=[], metavar="SPLIT",
                        help="drop questions whose text is in <output>/SPLIT.jsonl (repeatable), e.g. keep "
                             "train disjoint from a held-out split prepared first")


def _split_questions(out_dir: Path, split: str) -> set[str]:
    from mhpo_vl.jsonl import iter_jsonl

    path = out_dir / f"{split}.jsonl"
    if not path.is_file():
        raise DataPrepError(f"--exclude-split {split}: {path} not found (prepare that split first, as jsonl)")
    return {record["prompt"] for _, record in iter_jsonl(path) if isinstance(record, dict) and "prompt" in record}


def _open(args: argparse.Namespace) -> SourceData:
    try:
        import reasoning_gym
    except ImportError:
        raise DataPrepError("reasoning_gym needs `pip install reasoning-gym` (extra: mhpo-vl[data])") from None
    if args.n < 1:
        raise DataPrepError(f"--n must be >= 1, got {args.n}")
    task_args = parse_task_args(args.task_args)
    excluded: set[str] = set()
    for split in args.exclude_split:
        excluded |= _split_questions(Path(args.output), split)
    filtering = bool(excluded) or args.unique
    draws = args.n * MAX_DRAWS_PER_RECORD if filtering else args.n
    try:
        dataset = reasoning_gym.create_dataset(args.task, size=draws, seed=split_seed(args.seed, args.split),
                                               **task_args)
    except TypeError as exc:  # an unknown config field
        raise DataPrepError(f"--task-args for reasoning-gym task {args.task!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - unknown task names and invalid configs raise various errors
        raise DataPrepError(f"reasoning-gym task {args.task!r}: {exc}") from None

    def candidates() -> Iterator[Candidate]:
        seen: set[str] = set()
        written = 0
        for i in range(draws):
            if written >= args.n:
                return
            item = dataset[i]
            question, default_id = item["question"], f"{args.task}-{args.split}-{i}"
            if question in excluded:
                yield rejected({"index": i}, Reject("question_in_other_split", question[-80:]), default_id)
                continue
            if args.unique and question in seen:
                yield rejected({"index": i}, Reject("duplicate_question", question[-80:]), default_id)
                continue
            seen.add(question)
            meta: dict[str, Any] = {"task": args.task, "task_args": task_args,
                                    "task_metadata": json.loads(json.dumps(item.get("metadata", {}), default=str))}
            fields = {"prompt": question, "answer": item["answer"], "images": [], "meta": meta}
            written += 1
            yield Candidate({"index": i}, fields=fields, default_id=default_id)
        if written < args.n:
            raise DataPrepError(f"reasoning-gym task {args.task!r} gave only {written} new questions in {draws} "
                                f"draws (asked for --n {args.n}); the task space is too small for --unique / "
                                "--exclude-split at this size")

    return SourceData(candidates(), None, None if filtering else args.n)


SOURCES = [Source("reasoning_gym", "procedural text problems from reasoning-gym (text only)", _args, _open)]
