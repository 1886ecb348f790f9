"""`make gpu-smoke`: the GPU paths of an RL run, end to end, on one CUDA GPU in a few minutes.

What it does (README "GPU"): builds a ~0.5B-parameter Qwen2.5-VL-architecture model from a config (random
weights, a locally trained tokenizer, no network), prepares the tiny task's data (easy-vqa through
data_prep when the package is installed, else data_prep's own rendered shape questions), and runs 3 RL steps
with the HF backend, bf16 mixed precision, gradient checkpointing and ``trainer.strategy=fsdp2`` on a 1-rank
process group (so FSDP2's ``fully_shard`` really shards, gathers and reduces, over one GPU). Then it reloads
the final checkpoint with ``from_pretrained`` and compares it with the trained weights, resumes from it for
one more step, and compares ``mhpo-vl plan``'s estimate with ``torch.cuda.max_memory_allocated``.

stdout is ONE JSON line (everything else goes to stderr)::

    {"ok", "steps", "s_per_step", "tokens_per_s", "peak_gib", "plan_gib", "ratio", "checkpoint_reload_ok",
     "resume_ok", "sharded", ...}

Exit code 0 when every check passed, 1 otherwise. Without CUDA it prints "no CUDA device: skipped" and exits 0.
``--allow-cpu --tiny`` runs the same code on the CPU at tiny size (the test suite does), without the
CUDA-only numbers (peak memory, ratio).

It imports only torch, transformers, accelerate, peft, safetensors, pillow, pyyaml, tqdm, numpy and
math-verify (the reward workers), plus easy-vqa when present: a GPU machine with torch and transformers
preinstalled gets the rest from ``--wheels DIR`` (pure-Python wheels from scripts/gpu_smoke_wheels.sh,
unpacked into a temporary folder: no pip, no network).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import gc
import importlib.util
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "tiny_cpu_mhpo.yaml"
# a reward that differs between samples of a random model (accuracy alone gives zero advantages, zero gradients)
REWARD = Path(__file__).resolve().with_name("gpu_smoke_reward.py")
GIB = 1024**3
STEPS = 3
PLAN_TOLERANCE = 0.25  # the aim: measured peak within 25% of the plan (reported, not a failure)
TIMEOUT_S = 480.0  # the issue's bound for one GPU: a hung or slower run fails


@dataclasses.dataclass(frozen=True)
class Size:
    """Model and batch of one smoke size (``build_tiny_model`` keywords and rollout shape)."""

    hidden: int
    layers: int
    heads: int
    vision_hidden: int
    vision_depth: int
    image_side: int  # pixels; multiples of 28 (224 -> 64 image tokens, 56 -> 4)
    prompts: int
    group: int
    new_tokens: int
    micro_batch: int
    mini_batch: int


SIZES = {
    # ~494M parameters (hidden 1536 with 128-dim heads, 20 layers; vision tower 1280 wide, 2 blocks, 68M):
    # 8 prompts x 8 samples x 64 new tokens, micro-batches of 16, 2 optimizer steps per trainer step.
    "smoke": Size(1536, 20, 12, 1280, 2, 224, 8, 8, 64, 16, 32),
    # the demo's tiny model; seconds on a CPU
    "tiny": Size(128, 2, 4, 64, 1, 56, 4, 4, 4, 8, 8),
}


def log(message: str) -> None:
    print(f"[gpu-smoke] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- environment


def install_wheels(folder: Path) -> None:
    """Unpack the pure-Python wheels ``folder/*.whl`` (a wheel is a zip of its installed files) into a
    temporary site folder put first on sys.path and PYTHONPATH (the reward workers are subprocesses)."""
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        return
    site = Path(tempfile.mkdtemp(prefix="mhpo-smoke-site-"))
    atexit.register(shutil.rmtree, site, ignore_errors=True)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    log(f"unpacked {len(wheels)} wheels from {folder} into {site}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_one_rank_group(cuda: bool) -> None:
    """A 1-process torch.distributed group, so that ``trainer.strategy=fsdp2`` applies ``fully_shard``."""
    import torch
    import torch.distributed as dist

    if cuda:
        torch.cuda.set_device(0)
    dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{free_port()}",
                            rank=0, world_size=1)


# ----------------------------------------------------------------------------- pieces


def prepare_data(data_dir: Path, side: int, n_train: int, n_test: int) -> str:
    """Train and test splits of the tiny task; returns the task name used."""
    from data_prep.cli import main as data_prep_main

    task = "easy_vqa" if importlib.util.find_spec("easy_vqa") is not None else "largest_color,left_of"
    for split, n in (("train", n_train), ("test", n_test)):
        code = data_prep_main(["synthetic", "--task", task, "--n", str(n), "--image-size", str(side),
                               "--split", split, "--output", str(data_dir)])
        if code != 0:
            raise RuntimeError(f"data_prep failed for the {split} split (exit code {code})")
    return task


def overrides(size: Size, model_dir: Path, data_dir: Path, run_dir: Path) -> list[str]:
    """The tiny recipe turned into the smoke run: fsdp2, bf16, checkpointing, HF backend, 3 steps."""
    pixels = size.image_side**2
    return [f"model.name_or_path={model_dir}", "model.dtype=float32", "model.attn_implementation=sdpa",
            "model.gradient_checkpointing=true", f"model.min_pixels={pixels}", f"model.max_pixels={pixels}",
            f"data.train_dir={data_dir}", f"data.eval_dir={data_dir}", "data.max_prompt_tokens=256",
            "rollout.backend=hf", f"rollout.prompts_per_step={size.prompts}", f"rollout.group_size={size.group}",
            f"rollout.max_new_tokens={size.new_tokens}", "rollout.eval_batch_size=16",
            f"reward.components={{accuracy: 1.0, \"{REWARD}:variety\": 1.0}}",
            "reward.isolation=thread",
            f"algo.mini_batch_size={size.mini_batch}", f"trainer.micro_batch_size={size.micro_batch}",
            "trainer.strategy=fsdp2", "trainer.mixed_precision=bf16", f"trainer.max_steps={STEPS}",
            f"trainer.output_dir={run_dir}", f"trainer.save_every={STEPS}", "trainer.keep_last=2",
            f"trainer.eval_every={STEPS}", "trainer.eval_limit=16", "trainer.lr=1e-5",
            "logging.progress_bar=false", "logging.plots=false"]


def longest_prompt(cfg: Any, n: int = 32) -> int:
    """Tokens (image tokens included) of the longest of the first ``n`` training prompts: what the plan
    takes as the prompt length, instead of its worst case ``data.max_prompt_tokens``."""
    from mhpo_vl.data import PromptDataset
    from mhpo_vl.data.collator import PromptCollator
    from mhpo_vl.models import load_processor

    collate = PromptCollator(load_processor(cfg.model), cfg.data.prompt_template, cfg.data.system_prompt,
                             cfg.model.min_pixels, cfg.model.max_pixels, cfg.data.max_prompt_tokens)
    records = PromptDataset(cfg.data.train_dir, cfg.data.train_split).records[:n]
    return max(int(collate([r]).inputs["attention_mask"].sum()) for r in records)


def steady(values: list[float]) -> float:
    """Mean over the steps after the first (which pays warm-up), or the only value."""
    rest = values[1:] or values
    return sum(rest) / len(rest)


def weights_equal(trained: dict[str, Any], checkpoint: Path, model_cfg: Any) -> tuple[bool, str]:
    """Whether the checkpoint, loaded like ``mhpo-eval`` does, holds exactly the trained weights."""
    import torch

    from mhpo_vl.models import load_policy

    loaded = load_policy(dataclasses.replace(model_cfg, name_or_path=str(checkpoint), gradient_checkpointing=False))
    state = loaded.state_dict()
    missing = [k for k in trained if k not in state]
    if missing:
        return False, f"{len(missing)} trained tensors missing from the checkpoint, e.g. {missing[0]}"
    for name, tensor in trained.items():
        if not torch.equal(state[name].to(tensor.dtype), tensor):
            diff = (state[name].float() - tensor.float()).abs().max().item()
            return False, f"{name} differs by up to {diff:.3g}"
    return True, f"{len(trained)} tensors equal"


def finite(lines: list[dict], *keys: str) -> bool:
    return all(math.isfinite(float(line[k])) for line in lines for k in keys if k in line)


# ----------------------------------------------------------------------------- the run


def smoke(args: argparse.Namespace, work: Path, cuda: bool, out: dict[str, Any]) -> None:
    """Build, train, check, filling ``out`` as it goes (the JSON record: ``ok`` and ``failures`` say what
    passed; on an exception the caller adds ``error`` to what is there so far)."""
    import torch
    import transformers

    from mhpo_vl.config import load_config
    from mhpo_vl.models.tiny import build_tiny_model
    from mhpo_vl.trainer.checkpoint import latest_checkpoint, read_trainer_state
    from mhpo_vl.trainer.metrics import read_metrics
    from mhpo_vl.trainer.parallel import is_fsdp
    from mhpo_vl.trainer.plan import plan
    from mhpo_vl.trainer.rl import RLTrainer

    size = SIZES[args.size]
    failures: list[str] = []
    out.update({"ok": False, "size": args.size, "device": torch.cuda.get_device_name(0) if cuda else "cpu",
                "torch": torch.__version__, "transformers": transformers.__version__, "strategy": "fsdp2",
                "mixed_precision": "bf16", "backend": "hf", "failures": failures})
    t0 = time.perf_counter()
    model_dir, data_dir, run_dir = work / "model", work / "data", work / "run"
    log(f"building the {args.size} model in {model_dir}")
    build_tiny_model("qwen2_5_vl", model_dir, hidden=size.hidden, layers=size.layers, heads=size.heads,
                     vision_hidden=size.vision_hidden, vision_depth=size.vision_depth, seed=0,
                     initializer_range=0.02, min_pixels=size.image_side**2, max_pixels=size.image_side**2)
    out["task"] = prepare_data(data_dir, size.image_side, n_train=4 * size.prompts * (STEPS + 1), n_test=16)
    out["setup_s"] = round(time.perf_counter() - t0, 1)
    common = overrides(size, model_dir, data_dir, run_dir)
    cfg = load_config(RECIPE, common)

    log(f"training {STEPS} steps (fsdp2 on a 1-rank group, bf16)")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t_train = time.perf_counter()
    trainer = RLTrainer(cfg)
    out["model_params"] = sum(p.numel() for p in trainer.model.parameters())
    out["sharded"] = bool(trainer.parallel.sharded and is_fsdp(trainer.model))
    trainer.train()
    out["train_s"] = round(time.perf_counter() - t_train, 1)
    # peak of live tensors on the GPU over construction and the 3 steps (None on the CPU: CUDA-only numbers)
    out["peak_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 3) if cuda else None
    out["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / GIB, 3) if cuda else None
    trained = trainer.parallel.full_model_state(trainer.model) or {}
    trainer.reward.close()
    del trainer
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()

    lines = read_metrics(run_dir / "metrics.jsonl")
    out["steps"] = len(lines)
    out["s_per_step"] = round(steady([m["time/step"] for m in lines]), 3) if lines else None
    out["first_step_s"] = round(lines[0]["time/step"], 3) if lines else None
    out["tokens_per_s"] = round(steady([m["tokens_per_s"] for m in lines]), 1) if lines else None
    if "optimizer_steps" in (lines[-1] if lines else {}):
        out["optimizer_steps"] = [m["optimizer_steps"] for m in lines]
    out["eval_accuracy"] = lines[-1].get("eval/accuracy") if lines else None
    if out["steps"] != STEPS:
        failures.append(f"{out['steps']} steps logged, expected {STEPS}")
    if not finite(lines, "loss", "grad_norm"):
        failures.append("a non-finite loss or grad_norm")
    if not out["sharded"]:
        failures.append("trainer.strategy=fsdp2 did not shard the model with fully_shard")
    if out["eval_accuracy"] is None:
        failures.append(f"no periodic eval at step {STEPS}")

    # the plan, without its fixed runtime overhead (CUDA context and workspaces are outside max_memory_allocated)
    gpu_gib = torch.cuda.get_device_properties(0).total_memory / GIB if cuda else 80.0
    out["prompt_tokens"] = longest_prompt(cfg)
    est, _ = plan(cfg, gpus=1, gpu_mem_gib=gpu_gib, prompt_tokens=out["prompt_tokens"], overhead_gib=0.0)
    out["plan_gib"] = round(est.peak / GIB, 3)
    out["plan_gib_with_overhead"] = round((est.peak + 1.5 * GIB) / GIB, 3)
    out["ratio"] = round(out["peak_gib"] / out["plan_gib"], 3) if cuda else None  # measured / planned
    out["plan_within_25pct"] = abs(out["ratio"] - 1) <= PLAN_TOLERANCE if cuda else None

    final = latest_checkpoint(run_dir)
    if final is None or int(read_trainer_state(final)["step"]) != STEPS:
        failures.append(f"no checkpoint of step {STEPS} in {run_dir}")
        out["checkpoint_reload_ok"] = False
    else:
        ok, detail = weights_equal(trained, final, cfg.model)
        out["checkpoint_reload_ok"], out["checkpoint_detail"] = ok, detail
        if not ok:
            failures.append(f"checkpoint reload: {detail}")
    del trained
    gc.collect()

    log("resuming from the checkpoint for one more step")
    resumed = RLTrainer(load_config(RECIPE, [*common, "trainer.resume=auto", f"trainer.max_steps={STEPS + 1}"]))
    resumed.train()
    resumed.reward.close()
    del resumed
    gc.collect()
    after = read_metrics(run_dir / "metrics.jsonl")
    out["resume_ok"] = [m["step"] for m in after][-1:] == [STEPS + 1] and finite(after, "loss", "grad_norm")
    if not out["resume_ok"]:
        failures.append("resume from the checkpoint did not run one more finite step")

    out["wall_s"] = round(time.perf_counter() - t0, 1)
    out["ok"] = not failures


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="smoke", help="model size (default: %(default)s)")
    parser.add_argument("--tiny", dest="size", action="store_const", const="tiny", help="same as --size tiny")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no CUDA device")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".whl" / "gpu-smoke",
                        help="folder of wheels to install first when present (default: %(default)s)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one, removed)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S,
                        help="seconds before the check fails as hung or too slow (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print("no CUDA device: skipped", flush=True)
        return 0
    # stdout carries the JSON line only: everything else (trainer, workers, libraries) goes to stderr
    json_out = os.fdopen(os.dup(1), "w")
    sys.stdout.flush()
    os.dup2(2, 1)
    record: dict[str, Any] = {}
    once = threading.Lock()  # the watchdog and the main thread: only the first writes the line

    def emit(extra: dict[str, Any]) -> None:
        if once.acquire(blocking=False):
            json_out.write(json.dumps({**dict(record), **extra}) + "\n")
            json_out.flush()

    def hung() -> None:  # a hang in a collective or kernel never returns to Python: report and leave
        emit({"ok": False, "error": f"timeout: not done after {args.timeout:g} s"})
        os._exit(1)

    watchdog = threading.Timer(args.timeout, hung)
    watchdog.daemon = True
    watchdog.start()
    try:
        if args.wheels.is_dir():
            install_wheels(args.wheels)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        init_one_rank_group(cuda)
        with contextlib.ExitStack() as stack:
            if args.work is None:
                work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mhpo-gpu-smoke-")))
            else:
                work = args.work
                work.mkdir(parents=True, exist_ok=True)
            smoke(args, work, cuda, record)
    except BaseException as exc:  # noqa: BLE001 - any failure becomes the JSON line and exit code 1
        import traceback

        traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        record.update({"ok": False, "error": f"{type(exc).__name__}: {first}"})
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    watchdog.cancel()
    emit({})
    return 0 if record.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
