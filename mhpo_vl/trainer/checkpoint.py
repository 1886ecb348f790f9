"""Atomic checkpoints of a training run: model (adapter only under LoRA), optimizer, scheduler, RNG, state.

Layout of ``run_dir/checkpoints/step_N/``: the model folder at the top, everything else in a subfolder,
so that loaders which take every ``*.safetensors`` of a model folder as weights (vLLM, ``vllm serve``)
see only the model::

    model.safetensors + config.json ...   full model (``save_pretrained``) and processor files, or
    adapter_model.safetensors + adapter_config.json      peft adapter only
    extra_trainable.safetensors           peft only: trainable non-adapter weights (e.g. an unfrozen vision tower)
    trainer_state/
      optimizer.pt, scheduler.pt          ``torch.save`` of state dicts, read back with ``weights_only=True``;
                                          the optimizer state is keyed by parameter name, so ddp, fsdp2
                                          and 1-process runs read each other's checkpoints
      rng_state.json, rng_state.safetensors   python/numpy RNG (JSON) and torch CPU/CUDA RNG (tensors) of rank 0;
      rng_state_rank<R>.json/.safetensors     the same for rank R > 0
      state.json                          ``{"format_version", "step", "state"}``; marks a complete checkpoint

Checkpoints of format 2 and older (the same files directly in ``step_N/``, ``trainer_state.json`` as the
marker) are still read: :func:`trainer_state_dir` says where a checkpoint keeps its trainer state.

The model is always saved whole (FSDP2 shards are gathered on all ranks first), so ``from_pretrained``,
``mhpo-eval`` and vLLM load a checkpoint of any strategy. Everything is written by rank 0 into
``checkpoints/.tmp_step_N_<pid>/``, fsynced, then renamed to ``step_N``, so a kill during a save leaves
the previous checkpoint intact and never a half-written ``step_N``. With several processes every rank
calls :func:`save_checkpoint` (it gathers) and passes the run's :class:`~mhpo_vl.trainer.parallel.Parallel`.
Nothing here unpickles arbitrary objects.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mhpo_vl.errors import UserError
from mhpo_vl.models.processor import save_processor
from mhpo_vl.trainer.parallel import (
    Parallel,
    by_index,
    by_name,
    named_optimizer_state,
    optimizer_param_names,
    unwrap,
)

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
TRAINER_STATE_DIR = "trainer_state"  # subfolder of step_N/ with everything that is not the model
STATE_FILE = "state.json"  # in TRAINER_STATE_DIR, written last: its presence marks a complete checkpoint
LEGACY_STATE_FILE = "trainer_state.json"  # format <= 2: the marker, beside the model files
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
RNG_JSON = "rng_state.json"
RNG_TENSORS = "rng_state.safetensors"
EXTRA_TRAINABLE = "extra_trainable.safetensors"
FORMAT_VERSION = 3  # 2: optimizer state keyed by parameter name, RNG state per rank; 3: trainer_state/ subfolder

_STEP_RE = re.compile(r"^step_(\d+)$")
_STALE_RE = re.compile(r"^\.(tmp|old)_step_\d+_\d+$")


# ----------------------------------------------------------------------------- RNG


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states: ``{"python", "numpy", "torch_cpu", "torch_cuda": [per-device tensors]}``."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch_cpu": torch.get_rng_state(), "torch_cuda": list(cuda)}


def restore_rng_state(rng: dict[str, Any]) -> None:
    """Restore states captured by :func:`capture_rng_state` (CUDA only when the device count matches)."""
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch_cpu"])
    cuda = rng.get("torch_cuda") or []
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            log.warning("checkpoint holds CUDA RNG states for %d devices but %d are visible; not restored",
                        len(cuda), torch.cuda.device_count())


def _rng_names(rank: int) -> tuple[str, str]:
    if rank == 0:
        return RNG_JSON, RNG_TENSORS
    return f"rng_state_rank{rank}.json", f"rng_state_rank{rank}.safetensors"


def _save_rng(rng: dict[str, Any], directory: Path, rank: int = 0) -> None:
    version, internal, gauss = rng["python"]
    name, key, pos, has_gauss, cached = rng["numpy"]
    doc = {"python": {"version": version, "state": list(internal), "gauss_next": gauss},
           "numpy": {"bit_generator": name, "key": [int(k) for k in key], "pos": int(pos),
                     "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    json_name, tensor_name = _rng_names(rank)
    (directory / json_name).write_text(json.dumps(doc))
    tensors = {"torch_cpu": rng["torch_cpu"]}
    tensors.update({f"torch_cuda_{i}": t.cpu() for i, t in enumerate(rng["torch_cuda"])})
    save_file(tensors, str(directory / tensor_name))


def _load_rng(directory: Path, rank: int = 0) -> dict[str, Any]:
    json_name, tensor_name = _rng_names(rank)
    doc = _read_json(directory / json_name)
    tensors = _read_safetensors(directory / tensor_name)
    try:
        py, npy = doc["python"], doc["numpy"]
        n_cuda = sum(1 for k in tensors if k.startswith("torch_cuda_"))
        return {
            "python": (int(py["version"]), tuple(int(x) for x in py["state"]), py["gauss_next"]),
            "numpy": (str(npy["bit_generator"]), np.asarray(npy["key"], dtype=np.uint32), int(npy["pos"]),
                      int(npy["has_gauss"]), float(npy["cached_gaussian"])),
            "torch_cpu": tensors["torch_cpu"],
            "torch_cuda": [tensors[f"torch_cuda_{i}"] for i in range(n_cuda)],
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{directory / json_name}: malformed RNG state ({exc!r})") from None


# ----------------------------------------------------------------------------- model


def _is_peft(model: torch.nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def _extra_trainable(model: torch.nn.Module, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Trainable weights of a peft model that its adapter file does not hold (by ``named_parameters`` name).

    Values come from ``state`` (a full state dict, e.g. gathered from FSDP2 shards) when given.
    """
    names = [n for n, p in model.named_parameters()
             if p.requires_grad and "lora_" not in n and "modules_to_save" not in n]
    source = state if state is not None else dict(model.named_parameters())
    return {n: source[n].detach().cpu().contiguous() for n in names}


def _save_model(model: torch.nn.Module, directory: Path, state: dict[str, torch.Tensor] | None = None) -> None:
    """``save_pretrained`` of ``model``; with ``state`` (its full state dict) the weights come from there."""
    model.save_pretrained(str(directory), **({"state_dict": state} if state is not None else {}))
    if _is_peft(model):
        extra = _extra_trainable(model, state)
        if extra:
            save_file(extra, str(directory / EXTRA_TRAINABLE))


def _load_model(model: torch.nn.Module, directory: Path) -> None:
    if _is_peft(model):
        _load_adapter(model, directory)
    else:
        _load_full_model(model, directory)


def _load_adapter(model: torch.nn.Module, directory: Path) -> None:
    from peft import set_peft_model_state_dict

    weights = _read_safetensors(directory / "adapter_model.safetensors")
    result = set_peft_model_state_dict(model, weights)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if result.unexpected_keys or missing:
        raise UserError(f"{directory}: adapter weights do not match the model "
                        f"(missing {missing[:3]}, unexpected {list(result.unexpected_keys)[:3]})")
    extra_path = directory / EXTRA_TRAINABLE
    expected = set(_extra_trainable(model))
    if expected and not extra_path.is_file():
        raise UserError(f"{directory}: no {EXTRA_TRAINABLE} although the model trains non-adapter weights "
                        f"(e.g. {sorted(expected)[0]})")
    if extra_path.is_file():
        extra = _read_safetensors(extra_path)
        _, unexpected = model.load_state_dict(extra, strict=False)
        if unexpected or expected - set(extra):
            raise UserError(f"{extra_path}: does not match the model's trainable weights "
                            f"(unexpected {list(unexpected)[:3]}, missing {sorted(expected - set(extra))[:3]})")


def _load_full_model(model: torch.nn.Module, directory: Path) -> None:
    """Load a ``save_pretrained`` directory into ``model`` in place.

    ``from_pretrained`` of the same class applies transformers' checkpoint key conversions (the saved key
    names of e.g. Qwen2.5-VL differ from ``state_dict()``'s); the weights are then copied with strict key
    checking. Costs one extra copy of the model in CPU memory while loading.
    """
    if not (directory / "config.json").is_file():
        raise UserError(f"{directory}: no config.json; not a full-model checkpoint "
                        "(a LoRA checkpoint must be loaded into a peft model)")
    dtype = next(model.parameters()).dtype
    try:
        fresh = type(model).from_pretrained(str(directory), dtype=dtype)
    except Exception as exc:  # noqa: BLE001 - any failure means an unreadable checkpoint
        raise UserError(f"{directory}: cannot load model weights ({exc})") from None
    try:
        model.load_state_dict(fresh.state_dict(), strict=True)
    except RuntimeError as exc:
        raise UserError(f"{directory}: model weights do not match the model ({exc})") from None
    finally:
        del fresh


# ----------------------------------------------------------------------------- files


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: missing from checkpoint") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: corrupt checkpoint file ({exc})") from None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(f"{path}: missing from checkpoint")
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several error types
        raise UserError(f"{path}: corrupt checkpoint file ({exc})") from None


def _torch_load(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"{path}: missing from checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, unpickling refusal, ...
        raise UserError(f"{path}: corrupt or unsafe checkpoint file ({exc})") from None


def _fsync(path: Path) -> None:
    """fsync a file or directory; silently skipped where the OS does not allow it (e.g. dirs on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            _fsync(Path(dirpath) / name)
        _fsync(Path(dirpath))


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step_N`` directory under ``root``, ascending by step."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_RE.match(p.name))]
    return sorted(found)


# ----------------------------------------------------------------------------- public API


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any | None,
    state: dict[str, Any],
    keep_last: int,
    parallel: Parallel | None = None,
    processor: Any | None = None,
    processor_source: str | None = None,
) -> Path:
    """Write ``run_dir/checkpoints/step_{step}/`` atomically and prune to the newest ``keep_last``.

    ``state`` must be JSON-serialisable (step, data position, epoch, counters, metrics...); it is returned
    by :func:`load_checkpoint`. Checkpoints of later steps (left by a run that was resumed from an
    earlier step) are deleted, so ``latest_checkpoint`` follows the current run. With ``parallel`` (several
    processes) every rank must call this: model, optimizer and RNG states are gathered, rank 0 writes.
    With ``processor`` the checkpoint also holds the processor files, so it loads standalone
    (``from_pretrained``, ``mhpo-eval run --model``).
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    try:
        state_text = json.dumps({"format_version": FORMAT_VERSION, "step": int(step), "state": state}, indent=1)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"checkpoint state must be JSON-serialisable: {exc}") from None
    root = Path(run_dir) / CHECKPOINTS
    final = root / f"step_{step}"
    plain = unwrap(model)
    if parallel is None:  # one process
        model_state, optim_state, rngs = None, None, [capture_rng_state()]
        if optimizer is not None:
            optim_state = named_optimizer_state(plain, getattr(optimizer, "optimizer", optimizer))
    else:  # collectives first, on every rank
        model_state = parallel.full_model_state(model) if parallel.sharded else None
        optim_state = parallel.full_optimizer_state(model, optimizer) if optimizer is not None else None
        rngs = parallel.gather_objects(capture_rng_state())
        if not parallel.is_main:
            parallel.barrier()  # return once rank 0 has published the checkpoint
            return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp_step_{step}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        _save_model(plain, tmp, model_state)
        if processor is not None:
            save_processor(processor, tmp, processor_source)
        trainer_dir = tmp / TRAINER_STATE_DIR
        trainer_dir.mkdir()
        if optim_state is not None:
            torch.save(optim_state, trainer_dir / OPTIMIZER_FILE)
        if scheduler is not None:
            torch.save(scheduler.state_dict(), trainer_dir / SCHEDULER_FILE)
        for rank, rng in enumerate(rngs):
            _save_rng(rng, trainer_dir, rank)
        (trainer_dir / STATE_FILE).write_text(state_text)
        _fsync_tree(tmp)
        _publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(root, step, keep_last)
    if parallel is not None:
        parallel.barrier()
    return final


def _publish(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` (same step saved again) is replaced."""
    old = None
    if final.exists():
        old = final.with_name(f".old_{final.name}_{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _prune(root: Path, step: int, keep_last: int) -> None:
    for entry in root.iterdir():
        if entry.is_dir() and _STALE_RE.match(entry.name):
            log.info("removing leftover of an interrupted save: %s", entry)
            shutil.rmtree(entry, ignore_errors=True)
    dirs = _step_dirs(root)
    incomplete = [p for s, p in dirs if s != step and not is_complete(p)]
    later = [p for s, p in dirs if s > step and p not in incomplete]
    for path in later:
        log.warning("removing %s: it is later than the checkpoint just written (step %d)", path, step)
    older = [p for s, p in dirs if s < step and p not in incomplete]
    stale = incomplete + later + older[: max(0, len(older) - (keep_last - 1))]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)


def trainer_state_dir(path: str | Path) -> Path:
    """Where checkpoint ``path`` keeps optimizer, scheduler, RNG and state: ``path/trainer_state/``, or
    ``path`` itself for a checkpoint of format 2 or older (its files beside the model's)."""
    path = Path(path)
    if not (path / TRAINER_STATE_DIR / STATE_FILE).is_file() and (path / LEGACY_STATE_FILE).is_file():
        return path
    return path / TRAINER_STATE_DIR


def _state_file(path: Path) -> Path:
    folder = trainer_state_dir(path)
    return folder / (LEGACY_STATE_FILE if folder == path else STATE_FILE)


def legacy_weight_strays(path: str | Path) -> list[str]:
    """Names of the trainer-state ``*.safetensors`` files that a checkpoint of format 2 or older keeps in its
    model folder (vLLM would load them as weights); empty for any other folder."""
    path = Path(path)
    if trainer_state_dir(path) != path:
        return []
    return sorted(p.name for p in path.glob("rng_state*.safetensors"))


def is_complete(path: str | Path) -> bool:
    """True when checkpoint ``path`` was published whole (its state file exists, in either layout)."""
    return _state_file(Path(path)).is_file()


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The highest-step complete checkpoint under ``run_dir/checkpoints`` (None if there is none)."""
    complete = [p for _, p in _step_dirs(Path(run_dir) / CHECKPOINTS) if is_complete(p)]
    return complete[-1] if complete else None


def read_trainer_state(path: str | Path) -> dict[str, Any]:
    """The ``state`` dict saved in checkpoint ``path`` (without touching model or optimizer)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"checkpoint not found: {path}")
    state_file = _state_file(path)
    doc = _read_json(state_file)
    if not isinstance(doc, dict) or not isinstance(doc.get("state"), dict):
        raise UserError(f"{state_file}: malformed trainer state (expected an object with 'state')")
    return doc["state"]


def load_model_weights(path: str | Path, model: torch.nn.Module) -> None:
    """Load checkpoint ``path``'s weights into ``model`` (plain or peft, before any FSDP2 sharding)."""
    path = Path(path)
    read_trainer_state(path)  # a complete checkpoint, or a clear error
    _load_model(unwrap(model), path)


def load_training_state(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any | None,
    restore_rng: bool = True,
    parallel: Parallel | None = None,
) -> dict[str, Any]:
    """Load optimizer, scheduler and this rank's RNG state from ``path``; return the trainer state.

    ``model`` is the (possibly sharded) model the optimizer trains: its parameter names map the
    name-keyed optimizer state (integer keys of format-1 checkpoints are mapped by parameter order).
    A rank with no RNG file of its own (the checkpoint was written by fewer processes) continues from
    rank 0's state reseeded with its rank, and says so.
    """
    state = read_trainer_state(path)
    path = trainer_state_dir(path)
    if optimizer is not None:
        saved = _torch_load(path / OPTIMIZER_FILE)
        try:
            if parallel is not None:
                parallel.load_optimizer_state(model, optimizer, saved)
            else:
                inner = getattr(optimizer, "optimizer", optimizer)
                names = optimizer_param_names(model, inner)
                inner.load_state_dict(by_index(by_name(saved, names), names))
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
            raise UserError(f"{path / OPTIMIZER_FILE}: does not match the current optimizer ({exc})") from None
    if scheduler is not None:
        saved = _torch_load(path / SCHEDULER_FILE)
        try:
            scheduler.load_state_dict(saved)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise UserError(f"{path / SCHEDULER_FILE}: does not match the current scheduler ({exc})") from None
    if restore_rng:
        rank = parallel.rank if parallel is not None else 0
        if (path / _rng_names(rank)[0]).is_file():
            restore_rng_state(_load_rng(path, rank))
        else:
            log.warning("%s has no RNG state for rank %d (saved by fewer processes): rank 0's state, reseeded "
                        "with the rank", path, rank)
            restore_rng_state(_load_rng(path, 0))
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item()) + 7919 * rank
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
    return state


def load_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any | None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load checkpoint ``path`` into ``model``/``optimizer``/``scheduler``, restore RNG, return the state.

    One process. ``model`` must be built like the saved one: a peft model for an adapter checkpoint
    (its adapter weights are replaced), a plain transformers model otherwise (all weights replaced,
    strict keys). Any missing or corrupt file raises :class:`~mhpo_vl.errors.UserError` naming it.
    Several processes: :func:`load_model_weights` before sharding, then :func:`load_training_state`.
    """
    load_model_weights(path, model)
    return load_training_state(path, model=model, optimizer=optimizer, scheduler=scheduler, restore_rng=restore_rng)
