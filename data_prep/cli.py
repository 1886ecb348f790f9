"""Command line: ``python -m data_prep <source> ... --output DIR`` and ``python -m data_prep inspect DIR``."""

from __future__ import annotations

import argparse
from pathlib import Path

from data_prep.errors import REASONS, DataPrepError
from data_prep.images import ImageOptions
from data_prep.pipeline import PrepareOptions, prepare, summary_line
from data_prep.records import ANSWER_TYPES
from data_prep.sources import all_sources
from data_prep.writer import FORMATS
from mhpo_vl.cli_utils import OneLineErrorParser, float_at_least_one, positive_int, run_user_command

_Parser = OneLineErrorParser
_positive_int = positive_int
_positive_float = float_at_least_one


def _split_name(text: str) -> str:
    if not text or not all(ch.isalnum() or ch in "_-." for ch in text) or text.startswith("."):
        raise argparse.ArgumentTypeError(f"split names use letters, digits, '_', '-', '.': {text!r}")
    return text


def _add_common(parser: argparse.ArgumentParser) -> None:
    out = parser.add_argument_group("output")
    out.add_argument("--output", required=True, help="output directory (created if needed)")
    out.add_argument("--split", type=_split_name, default="train",
                     help="split name: writes <output>/<split>.jsonl|parquet (default: train)")
    out.add_argument("--format", choices=FORMATS, default="jsonl", help="record file format (default: jsonl)")
    out.add_argument("--image-format", choices=("png", "jpeg"), default="png",
                     help="format of stored images (default: png, lossless)")
    out.add_argument("--limit", type=_positive_int, help="read at most this many input records")
    out.add_argument("--answer-type", choices=ANSWER_TYPES,
                     help="answer type for records that do not set one (default: inferred from the answer)")
    img = parser.add_argument_group("image checks")
    img.add_argument("--max-image-pixels", type=_positive_int, default=ImageOptions.max_image_pixels,
                     help="decompression-bomb limit: reject images with more pixels (default: %(default)s)")
    img.add_argument("--min-image-side", type=_positive_int, default=ImageOptions.min_side,
                     help="reject images with a side shorter than this (default: %(default)s)")
    img.add_argument("--max-aspect-ratio", type=_positive_float, default=ImageOptions.max_aspect_ratio,
                     help="reject images whose long/short side ratio exceeds this (default: %(default)s)")
    img.add_argument("--max-pixels", type=_positive_int,
                     help="downscale larger images to at most this many pixels, keeping the aspect ratio")
    tok = parser.add_argument_group("prompt length (needs a processor)")
    tok.add_argument("--max-prompt-tokens", type=_positive_int,
                     help="reject prompts whose token count, image tokens included, exceeds this")
    tok.add_argument("--processor", help="model or processor directory used to count prompt tokens")
    tok.add_argument("--processor-min-pixels", type=_positive_int,
                     help="min_pixels the processor resizes to when counting image tokens (default: ModelConfig's)")
    tok.add_argument("--processor-max-pixels", type=_positive_int,
                     help="max_pixels the processor resizes to when counting image tokens (default: ModelConfig's)")


def build_parser() -> argparse.ArgumentParser:
    """The full parser: one subcommand per source, plus ``inspect``."""
    reasons = "\n".join(f"  {name}: {text}" for name, text in REASONS.items())
    parser = _Parser(prog="python -m data_prep", formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Prepare image-text datasets for mhpo-vl: validate every record, normalise "
                                 "and deduplicate images, and report every dropped input with its reason.",
                     epilog=f"reject reasons (rejects.jsonl, summary.json):\n{reasons}")
    sub = parser.add_subparsers(dest="command", metavar="SOURCE", required=True, parser_class=_Parser)
    for source in all_sources().values():
        sp = sub.add_parser(source.name, help=source.help, description=source.help)
        source.add_arguments(sp)
        _add_common(sp)
    from data_prep.inspection import add_inspect_arguments

    add_inspect_arguments(sub.add_parser("inspect", help="plots and counts for a prepared directory",
                                         description="Counts by answer type, length and image-size "
                                                     "histograms, and a contact sheet of samples."))
    return parser


def run(args: argparse.Namespace) -> int:
    """Prepare one split from parsed arguments; print the one-line summary."""
    if args.command == "inspect":
        from data_prep.inspection import run_inspect

        return run_inspect(args)
    if args.max_prompt_tokens and not args.processor:
        raise DataPrepError("--max-prompt-tokens needs --processor DIR to count tokens")
    source = all_sources()[args.command]
    data = source.open(args)
    options = PrepareOptions(
        out_dir=Path(args.output), split=args.split, fmt=args.format, source=source.name,
        image_root=data.image_root, answer_type=args.answer_type, limit=args.limit,
        images=ImageOptions(max_image_pixels=args.max_image_pixels, min_side=args.min_image_side,
                            max_aspect_ratio=args.max_aspect_ratio, max_pixels=args.max_pixels,
                            image_format=args.image_format),
    )
    if args.processor:
        from data_prep.tokens import prompt_length_check

        options.prompt_check = prompt_length_check(args.processor, args.max_prompt_tokens,
                                                   args.processor_min_pixels, args.processor_max_pixels)
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise DataPrepError(f"--output exists and is not a directory: {args.output}")
    summary = prepare(data.candidates, options, total=data.total)
    print(summary_line(summary, args.split, Path(args.output)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m data_prep`` and ``mhpo-prep``; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage mistake (2): return the code instead of exiting
        return exc.code if isinstance(exc.code, int) else 2
    return run_user_command(run, args, prog="data_prep")
