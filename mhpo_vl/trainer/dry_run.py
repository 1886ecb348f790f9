"""`mhpo-vl train RECIPE --dry-run`: the recipe's own RL step, twice, on a tiny model, offline, in seconds.

`dry_run_config(cfg)` returns a copy of the recipe in which only what a CPU and no download need is
replaced: the model becomes a tiny random model of the same architecture, the data a small generated
dataset, the batch 2 prompts x 2 samples x 8 new tokens, the run 2 steps into a temp directory. The
algo and reward sections are kept as they are, so the recipe's loss, hyperparameters, reward
components and options, PPO epochs, mini-batches and KL term really run. Every substitution is printed.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from mhpo_vl.config import Config
from mhpo_vl.errors import UserError
from mhpo_vl.models import VLM_ARCHS, build_tiny_model

DRY_STEPS = 2
DRY_PROMPTS = 2
DRY_GROUP = 2
DRY_NEW_TOKENS = 8
DRY_RECORDS = 16
# Square image side per architecture: 2x2 merged patches -> 4 image tokens (28 px units; 32 for Qwen3-VL).
IMAGE_SIDE = {"qwen2_vl": 56, "qwen2_5_vl": 56, "qwen3_vl": 64}
# Hub-name fragments (lower case, '.'/'_' folded to '-') -> architecture; first match wins.
_NAME_HINTS = (("qwen2-5-vl", "qwen2_5_vl"), ("qwen3-vl", "qwen3_vl"), ("qwen2-vl", "qwen2_vl"))
_MODEL_TYPES = {"qwen2_vl": "qwen2_vl", "qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl", "qwen2": "qwen2"}

Report = Callable[[str], None]


def infer_arch(name_or_path: str) -> tuple[str, str]:
    """(tiny architecture, why) for a model id or local directory.

    A local directory's ``config.json`` ``model_type`` wins; else the name: Qwen2.5-VL / Qwen3-VL /
    Qwen2-VL by name, another "-VL" name -> qwen2_5_vl, a hub-style ``org/name`` -> qwen2 (text LM).
    A path that exists nowhere and names no model (e.g. ``runs/demo/sft`` before the demo ran) is
    assumed to be a Qwen2.5-VL model, this toolkit's main target.

    >>> infer_arch("Qwen/Qwen2.5-VL-7B-Instruct")[0], infer_arch("Qwen/Qwen2.5-7B-Instruct")[0]
    ('qwen2_5_vl', 'qwen2')
    """
    config = Path(name_or_path) / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"model.name_or_path: cannot read {config}: {exc}") from None
        model_type = str(data.get("model_type", ""))
        if model_type in _MODEL_TYPES:
            return _MODEL_TYPES[model_type], f"model_type {model_type!r} in {config}"
        if "vision_config" in data:
            return "qwen2_5_vl", f"{config}: no tiny builder for VLM model_type {model_type!r}; using qwen2_5_vl"
        return "qwen2", f"{config}: no tiny builder for model_type {model_type!r}; using a qwen2 text LM"
    folded = re.sub(r"[._]", "-", name_or_path.lower())
    for hint, arch in _NAME_HINTS:
        if hint in folded:
            return arch, f"the name contains {hint!r}"
    if re.search(r"(^|[-/])vl([-/]|$)", folded):
        return "qwen2_5_vl", "a '-VL' model name without a known family; using qwen2_5_vl"
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name_or_path) and not name_or_path.startswith(("runs/", "./", "../")):
        return "qwen2", "a hub id without '-VL': a text LM"
    return "qwen2_5_vl", f"{name_or_path!r} is not a directory and names no known model; assuming qwen2_5_vl"


def write_text_records(out_dir: Path, n: int = DRY_RECORDS, split: str = "train") -> Path:
    """A prepared text dataset of ``n`` small arithmetic problems (records as in DESIGN.md section 4)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        a, b = 3 + (7 * i) % 17, 2 + (5 * i) % 11
        lines.append(json.dumps({"id": f"dry-{i}", "images": [], "prompt": f"What is {a} + {b}?",
                                 "answer": str(a + b), "answer_type": "math", "source": "dry_run", "split": split}))
    (out_dir / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return out_dir


def write_image_records(out_dir: Path, arch: str, n: int = DRY_RECORDS, split: str = "train") -> Path:
    """A prepared image dataset (synthetic shape counting) made by ``python -m data_prep synthetic``.

    A subprocess keeps the dependency direction (mhpo_vl never imports data_prep).
    """
    cmd = [sys.executable, "-m", "data_prep", "synthetic", "--task", "count", "--n", str(n),
           "--image-size", str(IMAGE_SIDE[arch]), "--split", split, "--output", str(out_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"dry run: preparing synthetic data failed ({' '.join(cmd[1:])}): "
                        f"{(done.stderr or done.stdout).strip()[-500:]}")
    return out_dir


def _mini_batch(original: int, old_batch: int, new_batch: int) -> int:
    """A mini-batch size for ``new_batch`` rows giving the same number of optimizer steps per rollout
    as ``original`` gave for ``old_batch`` (capped at one row per step); 0 stays 0 (whole batch)."""
    if original in (0, old_batch):
        return 0
    steps = min(max(1, old_batch // original), new_batch)
    size = new_batch // steps
    while new_batch % size:
        size -= 1
    return size


def _set(report: Report, obj: object, section: str, key: str, value: object, why: str = "") -> None:
    """Set ``obj.key`` and report the change (silent when unchanged)."""
    old = getattr(obj, key)
    if old != value:
        setattr(obj, key, value)
        report(f"  {section}.{key}: {old!r} -> {value!r}" + (f"  ({why})" if why else ""))


def _cpu_notes(cfg: Config, report: Report, on_gpu: bool) -> None:
    """Replace what cannot run here (no GPU, no network) and say so."""
    m = cfg.model
    if m.attn_implementation not in ("sdpa", "eager", ""):
        flash_ok = on_gpu and _has_module("flash_attn")
        if not flash_ok:
            _set(report, m, "model", "attn_implementation", "sdpa",
                 f"{m.attn_implementation} needs a CUDA GPU and its package")
    if not on_gpu:
        _set(report, m, "model", "dtype", "float32", "CPU: float32")
    _set(report, m, "model", "trust_remote_code", False, "the tiny model has no remote code")
    if not _has_module("vllm"):
        _set(report, cfg.rollout, "rollout", "backend", "hf", "vLLM is not installed here (make setup-vllm); "
             "transformers generate instead")
    _set(report, cfg.trainer, "trainer", "mixed_precision", "no", "dry run in full precision")
    _set(report, cfg.logging, "logging", "tensorboard", False, "dry run logs to metrics.jsonl only")
    _set(report, cfg.logging, "logging", "wandb", False, "dry run is offline")


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def dry_run_config(cfg: Config, workdir: str | Path | None = None, *, report: Report = print) -> Config:
    """A copy of ``cfg`` that runs 2 RL steps offline on a tiny model of the same architecture.

    Builds the tiny model and a small dataset under ``workdir`` (default: a new temp directory, kept
    so the run can be inspected) and prints every substitution through ``report``.
    """
    cfg = copy.deepcopy(cfg)
    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="mhpo-dry-run-"))
    root.mkdir(parents=True, exist_ok=True)
    arch, why = infer_arch(cfg.model.name_or_path)
    report(f"dry run: {DRY_STEPS} RL steps of algo {cfg.algo.name!r} on a tiny {arch} model ({why}); "
           f"files under {root}")
    model_dir = build_tiny_model(arch, root / "model")
    data_dir = root / "data"
    if arch in VLM_ARCHS:
        write_image_records(data_dir, arch)
        side = IMAGE_SIDE[arch] ** 2
        _set(report, cfg.model, "model", "min_pixels", side, "small synthetic images")
        _set(report, cfg.model, "model", "max_pixels", side, "small synthetic images")
    else:
        write_text_records(data_dir)
    _set(report, cfg.model, "model", "name_or_path", str(model_dir), f"tiny random {arch}")
    _set(report, cfg.data, "data", "train_dir", str(data_dir), "generated records")
    _set(report, cfg.data, "data", "train_split", "train")
    _set(report, cfg.data, "data", "eval_dir", str(data_dir), "periodic eval is off in a dry run")
    _set(report, cfg.data, "data", "eval_split", "train")
    old_batch = cfg.rollout.prompts_per_step * cfg.rollout.group_size
    _set(report, cfg.rollout, "rollout", "prompts_per_step", DRY_PROMPTS)
    _set(report, cfg.rollout, "rollout", "group_size", DRY_GROUP)
    _set(report, cfg.rollout, "rollout", "max_new_tokens", DRY_NEW_TOKENS)
    _set(report, cfg.algo, "algo", "mini_batch_size",
         _mini_batch(cfg.algo.mini_batch_size, old_batch, DRY_PROMPTS * DRY_GROUP),
         "same number of optimizer steps per rollout, scaled to the dry-run batch")
    t = cfg.trainer
    _set(report, t, "trainer", "max_steps", DRY_STEPS)
    _set(report, t, "trainer", "output_dir", str(root / "run"))
    _set(report, t, "trainer", "save_every", 0)
    _set(report, t, "trainer", "eval_every", 0)
    _set(report, t, "trainer", "resume", "")
    _cpu_notes(cfg, report, on_gpu=torch.cuda.is_available())
    cfg.validate()
    report(f"dry run: kept algo ({cfg.algo.name}, ppo_epochs={cfg.algo.ppo_epochs}, kl_coef={cfg.algo.kl_coef}), "
           f"reward components {dict(cfg.reward.components)}, LoRA={'on' if cfg.model.lora.enabled else 'off'}; "
           f"metrics go to {t.output_dir}/metrics.jsonl")
    return cfg
