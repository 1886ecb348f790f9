"""Fast, clear failures around the Hugging Face hub (shared by eval and data_prep).

The hub clients retry an unreachable server for tens of seconds before giving up. Here one short probe
decides: when the hub cannot be reached the caller fails at once with a hint (e.g. ``--data-dir``).
``HF_HUB_OFFLINE=1`` (or ``HF_DATASETS_OFFLINE=1``) skips the probe and reads only the local HF cache.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from mhpo_vl.errors import UserError

PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """True when the user asked for offline mode (``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE``)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def looks_like_hub_id(name: str) -> bool:
    """``org/name`` (or a bare ``name``) that is not a local path.

    >>> looks_like_hub_id("Qwen/Qwen2.5-VL-3B-Instruct"), looks_like_hub_id("/nonexistent"), looks_like_hub_id("./m")
    (True, False, False)
    """
    if not name or name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:
        return False
    return not Path(name).expanduser().exists()


def probe_hub(repo_id: str, *, repo_type: str = "dataset", timeout: float = PROBE_TIMEOUT_S) -> Optional[str]:
    """One request to the hub for ``repo_id``; None when it answered, else a one-line reason.

    A missing or gated repository is an answer (the caller's own load reports it properly).
    """
    import urllib.error
    import urllib.request

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    request = urllib.request.Request(f"{endpoint}/api/{repo_type}s/{repo_id}", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # the hub answered (404, 401, ...)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"the hub ({endpoint}) is unreachable ({reason})"


def load_hub_dataset(repo_id: str, config: Optional[str], split: str, *, hint: str,
                     cache_dir: Optional[str] = None) -> Any:
    """``datasets.load_dataset`` after one probe; any failure is a one-line ``UserError`` ending in ``hint``."""
    what = f"hub dataset {repo_id!r} (split {split!r})"
    if not hub_offline():
        reason = probe_hub(repo_id)
        if reason is not None:
            raise UserError(f"cannot load {what}: {reason}; {hint} (or set HF_HUB_OFFLINE=1 to use the HF cache)")
    try:
        import datasets

        return datasets.load_dataset(repo_id, config, split=split, cache_dir=cache_dir)
    except Exception as exc:  # noqa: BLE001 - offline, gated, missing split, ...: all user-facing
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        offline = " (HF_HUB_OFFLINE is set: only the HF cache was searched)" if hub_offline() else ""
        raise UserError(f"cannot load {what}{offline}: {first}; {hint}") from None
