"""`mhpo-vl` command line: train, sft, tiny-model, show-config.

User mistakes (bad recipe, unknown key, missing file) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from mhpo_vl import __version__
from mhpo_vl.cli_utils import run_user_command

OVERRIDES_HELP = (
    "dotted overrides of recipe keys, e.g. trainer.lr=1e-6 algo.c=2.0 rollout.group_size=4; "
    "unknown keys are rejected with a suggestion"
)


def _add_recipe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="path to a YAML recipe (see recipes/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)


def _cmd_train(args: argparse.Namespace) -> int:
    from mhpo_vl.config import load_config

    overrides = list(args.overrides)
    if args.resume:
        overrides.append("trainer.resume=auto")
    if args.output_dir:
        overrides.append(f"trainer.output_dir={args.output_dir}")
    if args.max_steps is not None:
        overrides.append(f"trainer.max_steps={args.max_steps}")
    cfg = load_config(args.recipe, overrides)
    from mhpo_vl.trainer import run_training

    run_training(cfg, dry_run=args.dry_run)
    return 0


def _cmd_sft(args: argparse.Namespace) -> int:
    from mhpo_vl.config import load_config

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"sft.output_dir={args.output_dir}")
    if args.max_steps is not None:
        overrides.append(f"sft.max_steps={args.max_steps}")
    cfg = load_config(args.recipe, overrides)
    from mhpo_vl.trainer import run_sft

    run_sft(cfg)
    return 0


def _cmd_show_config(args: argparse.Namespace) -> int:
    import yaml

    from mhpo_vl.config import config_to_dict, load_config

    cfg = load_config(args.recipe, args.overrides)
    sys.stdout.write(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return 0


def _cmd_tiny_model(args: argparse.Namespace) -> int:
    from mhpo_vl.models.tiny import build_tiny_model

    out = build_tiny_model(args.arch, args.out, hidden=args.hidden, layers=args.layers, heads=args.heads,
                           vision_hidden=args.vision_hidden, vision_depth=args.vision_depth, seed=args.seed,
                           initializer_range=args.initializer_range)
    print(f"tiny {args.arch} model written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to render --help in the docs)."""
    from mhpo_vl.models.tiny import ARCHS

    parser = argparse.ArgumentParser(
        prog="mhpo-vl",
        description="Fine-tune vision-language models with RL (MHPO and baselines) over verifier rewards.",
    )
    parser.add_argument("--version", action="version", version=f"mhpo-vl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages and show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", help="RL fine-tuning from a recipe",
                           description="Train a policy with the recipe's loss (MHPO by default) over grouped "
                                       "rollouts scored by verifiers. Writes config.yaml, metrics.jsonl, "
                                       "checkpoints/, plots/ and summary.json under trainer.output_dir.")
    _add_recipe_args(train)
    train.add_argument("--resume", action="store_true",
                       help="continue from the latest checkpoint in trainer.output_dir (= trainer.resume=auto)")
    train.add_argument("--output-dir", help="run directory (= trainer.output_dir=...)")
    train.add_argument("--max-steps", type=int, help="number of RL steps (= trainer.max_steps=...)")
    train.add_argument("--dry-run", action="store_true",
                       help="validate the recipe and run 2 steps on a tiny model of the same architecture "
                            "with generated data (no download), then exit")
    train.set_defaults(func=_cmd_train)

    sft = sub.add_parser("sft", help="supervised warm start on the answer format",
                         description="Supervised fine-tuning on prepared records (loss on the answer tokens "
                                     "only), with the same data and collator as RL. Saves to sft.output_dir.")
    _add_recipe_args(sft)
    sft.add_argument("--output-dir", help="where to save the model (= sft.output_dir=...)")
    sft.add_argument("--max-steps", type=int, help="number of SFT steps (= sft.max_steps=...)")
    sft.set_defaults(func=_cmd_sft)

    show = sub.add_parser("show-config", help="print the resolved config of a recipe",
                          description="Print the recipe with all defaults and overrides applied, as YAML.")
    _add_recipe_args(show)
    show.set_defaults(func=_cmd_show_config)

    tiny = sub.add_parser("tiny-model", help="build a tiny random model of a real architecture (offline)",
                          description="Build a randomly initialised model of a real Qwen architecture at tiny "
                                      "size, with a locally trained tokenizer and processor; the directory "
                                      "loads with the standard Auto classes, offline.")
    tiny.add_argument("--arch", required=True, choices=ARCHS, help="architecture to build")
    tiny.add_argument("--out", required=True, help="output directory")
    tiny.add_argument("--hidden", type=int, default=128, help="text hidden size (default 128)")
    tiny.add_argument("--layers", type=int, default=2, help="text decoder layers (default 2)")
    tiny.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    tiny.add_argument("--vision-hidden", type=int, default=64, help="vision tower width (default 64)")
    tiny.add_argument("--vision-depth", type=int, default=1, help="vision tower blocks (default 1)")
    tiny.add_argument("--initializer-range", type=float, default=0.1,
                      help="weight init std; 0.1 lets a tiny model learn to use the image (default 0.1)")
    tiny.add_argument("--seed", type=int, default=0, help="random seed; same seed, same weights (default 0)")
    tiny.set_defaults(func=_cmd_tiny_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point for `mhpo-vl` and `python -m mhpo_vl`."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may also follow --flags; anything else unknown is a usage error.
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    return run_user_command(args.func, args, verbose=args.verbose, prog="mhpo-vl")




if __name__ == "__main__":
    sys.exit(main())
