"""Which decoder samples fastest on this CPU: the HF backend's fast decoder against transformers' own options.

Same model, data, prompts x G and budget as `make bench` (scripts/bench_step.py) for one size; every decoder
samples the same batch at temperature 1 without top-k/top-p, under ``torch.no_grad`` in the model's float32:

    fast              mhpo-vl's decoder (rollout.hf_decoder=fast, the default; mhpo_vl/rollout/decode.py)
    fast_compile      the same with the decode-step forward under torch.compile (dynamic shapes)
    generate          transformers ``generate`` with its dynamic KV cache (rollout.hf_decoder=generate)
    static            ``generate`` with ``cache_implementation="static"``
    static_compile    the static cache with ``generate``'s compiled decode step (CompileConfig, on CPU too)
    continuous        transformers continuous batching (``generate_batch``, paged KV cache)

    python scripts/bench_decoders.py [--size tiny --decoders fast,generate,... --calls 4]

Prints the first call's seconds (compilation shows there) and the median of the later calls.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_step import SIZES  # noqa: E402
from bench_support import IMAGE_SIDE, bench_trainer  # noqa: E402

DECODERS = ("fast", "fast_compile", "generate", "static", "static_compile", "continuous")


def _generation_config(trainer: Any, group: int, **extra: Any) -> Any:
    from transformers import GenerationConfig

    r, tok = trainer.cfg.rollout, trainer.tokenizer
    return GenerationConfig(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=r.max_new_tokens,
                            num_return_sequences=group, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                            **extra)


def decoder(name: str, trainer: Any, batch: Any) -> Callable[[], None]:
    """A no-argument call that samples G responses for every prompt of ``batch`` with decoder ``name``."""
    import torch
    from transformers.generation.configuration_utils import CompileConfig

    model = trainer.unwrapped
    group = trainer.cfg.rollout.group_size
    if name in ("fast", "fast_compile"):
        if name == "fast_compile":
            eager = model.forward
            compiled = torch.compile(eager, dynamic=True)

            @functools.wraps(eager)  # keeps the signature the fast decoder checks for a cache argument
            def forward(*args: Any, **kwargs: Any) -> Any:
                decode_step = kwargs.get("input_ids") is not None and kwargs["input_ids"].shape[1] == 1
                return (compiled if decode_step else eager)(*args, **kwargs)

            model.forward = forward
        return lambda: trainer.source.backend.generate(model, batch, trainer.source.sampling())
    if name == "continuous":
        mask = batch.inputs["attention_mask"].bool()
        prompts = [row[m].tolist() for row, m in zip(batch.inputs["input_ids"], mask) for _ in range(group)]
        config = _generation_config(trainer, 1)
        return lambda: model.generate_batch(prompts, generation_config=config, progress_bar=False)
    extra: dict[str, Any] = {}
    if name in ("static", "static_compile"):
        extra["cache_implementation"] = "static"
    if name == "static_compile":
        compile_config = CompileConfig()
        compile_config._compile_all_devices = True  # generate compiles on accelerators only unless told
        extra["compile_config"] = compile_config
    else:
        extra["disable_compile"] = True
    config = _generation_config(trainer, group, **extra)
    return lambda: model.generate(**batch.inputs, generation_config=config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="tiny", choices=sorted(SIZES), help="model size (as in make bench)")
    parser.add_argument("--decoders", default=",".join(DECODERS), help=f"comma-separated, from {', '.join(DECODERS)}")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="response budget (default 128)")
    parser.add_argument("--calls", type=int, default=4, help="calls per decoder; the first is reported apart")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--image-side", type=int, default=IMAGE_SIDE, help=f"image side in pixels (default {IMAGE_SIDE})")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.decoders.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DECODERS))
    if unknown or args.calls < 2:
        parser.error(f"unknown decoder(s) {unknown}" if unknown else "--calls must be >= 2")
    import torch

    torch.set_num_threads(args.threads)
    plan = SIZES[args.size]
    trainer, params = bench_trainer(args.size, plan, args.max_new_tokens, "mhpo-decoders-",
                                    side=args.image_side)
    trainer.unwrapped.eval()
    batch = trainer.source.collator([trainer.source.dataset[i] for i in range(plan["prompts"])])
    eager_forward = trainer.unwrapped.forward
    print(f"size={args.size} ({params / 1e6:.1f}M parameters): {plan['prompts']} prompts x G={plan['group']} x "
          f"{args.max_new_tokens} new tokens, {args.threads} thread(s)")
    for name in names:
        trainer.unwrapped.forward = eager_forward
        call = decoder(name, trainer, batch)
        seconds = []
        try:
            with torch.no_grad():
                for _ in range(args.calls):
                    start = time.perf_counter()
                    call()
                    seconds.append(time.perf_counter() - start)
        except Exception as exc:  # a transformers option that does not run here: say so, measure the rest
            print(f"  {name:15s} failed: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        print(f"  {name:15s} first call {seconds[0]:6.2f} s, then median {statistics.median(seconds[1:]):6.2f} s "
              f"(range {min(seconds[1:]):.2f}-{max(seconds[1:]):.2f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
