"""The reward registry, the ``accuracy`` dispatcher, and loading user rewards from ``file.py:fn``."""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .bbox import iou_reward
from .choice import choice_accuracy
from .extract import unwrap
from .format import format_reward
from .length import length_penalty
from .maths import math_accuracy
from .modes import extract_final
from .numeric import numeric_accuracy

__all__ = ["REWARDS", "ANSWER_TYPES", "accuracy", "text_accuracy", "resolve_reward"]

RewardFn = Callable[..., float]
_SPACES = re.compile(r"\s+")
MAX_TEXT_CHARS = 10_000


def _norm_text(text: str) -> str:
    return _SPACES.sub(" ", unwrap(text)).strip().rstrip(".").strip().casefold()


def text_accuracy(completion: str, reference: Any, *, answer_tag: str = "answer", extract: str = "tags",
                  **_record: Any) -> float:
    """1.0 when the answer equals the reference as text: case-, whitespace- and final-period-insensitive.

    >>> text_accuracy("<answer>  New   York. </answer>", "new york")
    1.0
    """
    answer = extract_final(completion, extract, answer_tag=answer_tag)
    if answer is None or reference is None or len(answer) > MAX_TEXT_CHARS:
        return 0.0
    gold = _norm_text(str(reference))
    return 1.0 if gold and _norm_text(answer) == gold else 0.0


_BY_TYPE: dict[str, RewardFn] = {
    "math": math_accuracy,
    "choice": choice_accuracy,
    "numeric": numeric_accuracy,
    "bbox": iou_reward,
    "text": text_accuracy,
}
ANSWER_TYPES = tuple(_BY_TYPE)


def accuracy(
    completion: str,
    reference: Any,
    answer_type: str = "math",
    choices: Sequence[str] | Mapping[str, str] | None = None,
    **opts: Any,
) -> float:
    """Score with the verifier for the record's ``answer_type`` (math|choice|numeric|bbox|text).

    ``choices`` go to ``choice_accuracy``; other options (``rel_tol``, ``answer_tag``, ...) are passed
    on and ignored by verifiers that do not use them.

    >>> accuracy("<answer>B</answer>", "B", answer_type="choice")
    1.0
    >>> accuracy("<answer>1,000</answer>", "1000", answer_type="numeric")
    1.0
    """
    fn = _BY_TYPE.get(answer_type)
    if fn is None:
        raise ValueError(
            f"accuracy: unknown answer_type {answer_type!r}; expected one of {', '.join(ANSWER_TYPES)}"
        )
    if fn is choice_accuracy:
        return choice_accuracy(completion, reference, choices, **opts)
    return fn(completion, reference, **opts)


REWARDS: dict[str, RewardFn] = {
    "accuracy": accuracy,
    "math_accuracy": math_accuracy,
    "choice_accuracy": choice_accuracy,
    "numeric_accuracy": numeric_accuracy,
    "iou_reward": iou_reward,
    "text_accuracy": text_accuracy,
    "format_reward": format_reward,
    "length_penalty": length_penalty,
}


def _did_you_mean(name: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(options))}"


def _load_user_fn(spec: str, base_dir: Path) -> RewardFn:
    file_part, _, fn_name = spec.rpartition(":")
    path = Path(file_part).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise ConfigError(f"reward {spec!r}: file {str(path)!r} not found")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    module_spec = importlib.util.spec_from_file_location(f"mhpo_user_reward_{digest}", path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"reward {spec!r}: cannot load {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    # Registered before it runs, as an import would: dataclasses (and typing.get_type_hints) look the module
    # up in sys.modules, e.g. under `from __future__ import annotations`.
    sys.modules[module_spec.name] = module
    try:
        module_spec.loader.exec_module(module)  # the user's own reward code, named in their recipe
    except BaseException:
        sys.modules.pop(module_spec.name, None)
        raise
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise ConfigError(
            f"reward {spec!r}: no function {fn_name!r} in {str(path)!r}{_did_you_mean(fn_name, names)}"
        )
    return fn


def resolve_reward(name: str, base_dir: str | Path | None = None) -> RewardFn:
    """A reward function by registry name, or ``"path/to/file.py:function"`` (relative to base_dir,
    default the current directory). Unknown names raise ConfigError (a ValueError) with a suggestion.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"reward name must be a non-empty string, got {name!r}")
    if name in REWARDS:
        return REWARDS[name]
    if ":" in name and name.rpartition(":")[0].endswith(".py"):
        return _load_user_fn(name, Path(base_dir) if base_dir is not None else Path.cwd())
    raise ConfigError(
        f"unknown reward {name!r}{_did_you_mean(name, list(REWARDS))} (or use 'path/to/file.py:function')"
    )
