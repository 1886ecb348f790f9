"""What a reward function declares about itself, and how its return values become scores.

Shared by the trainer process and the user-reward worker processes (:mod:`._fn_worker`), so a
function behaves the same whichever isolation runs it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["reward_fn", "RewardSpec", "spec_of", "signature_fields", "as_score", "as_scores", "to_scores",
           "first_line", "run_warm_up"]

_POSITIONAL = ("completion", "reference", "completions", "references")


@dataclass(frozen=True)
class RewardSpec:
    """``batched``: the function takes lists; ``warm_up``: called once per process, with the
    component's recipe options it names, before the first step (e.g. to load a judge model)."""

    batched: bool = False
    warm_up: Callable[..., Any] | None = None


def reward_fn(*, batched: bool = False, warm_up: Callable[..., Any] | None = None) -> Callable:
    """Declare how the trainer calls a reward function.

    A batched function is called once per batch as ``fn(completions, references, **fields)``, where
    each record field is a list aligned with ``completions`` (recipe options stay scalars), and
    returns one score per completion.

    >>> @reward_fn(batched=True)
    ... def longer_is_better(completions, references, **fields):
    ...     return [min(1.0, len(c) / 100) for c in completions]
    >>> spec_of(longer_is_better).batched
    True
    """

    def mark(fn: Callable) -> Callable:
        fn.__mhpo_reward__ = RewardSpec(batched=batched, warm_up=warm_up)
        return fn

    return mark


def spec_of(fn: Callable) -> RewardSpec:
    """The :class:`RewardSpec` a function was declared with (defaults when undecorated)."""
    spec = getattr(fn, "__mhpo_reward__", None)
    return spec if isinstance(spec, RewardSpec) else RewardSpec()


def signature_fields(fn: Callable[..., Any]) -> tuple[bool, frozenset]:
    """(takes ``**kwargs``, keyword-capable parameter names besides the two positional inputs)."""
    params = inspect.signature(fn).parameters.values()
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    named = frozenset(
        p.name
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in _POSITIONAL
    )
    return takes_any, named


def run_warm_up(fn: Callable, options: dict[str, Any]) -> None:
    """Call the function's declared warm-up hook with the recipe options it accepts (if any)."""
    hook = spec_of(fn).warm_up
    if hook is None:
        return
    takes_any, named = signature_fields(hook)
    hook(**{k: v for k, v in options.items() if takes_any or k in named})


def as_score(value: Any) -> float:
    """A finite float from a reward's return value; ValueError naming the value otherwise.

    Numbers, bools and 0-d arrays/tensors are accepted; None, strings and NaN/inf are not.

    >>> as_score(1)
    1.0
    >>> as_score(None)
    Traceback (most recent call last):
    ...
    ValueError: returned None, not a number
    """
    if value is None or isinstance(value, (str, bytes)):
        raise ValueError(f"returned {_short(value)}, not a number")
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"returned {_short(value)}, not a number") from None
    if not math.isfinite(score):
        raise ValueError(f"returned {score}")
    return score


def as_scores(values: Any, n: int) -> list[float | ValueError]:
    """A batched function's return value as n scores (a ValueError in place of each bad one).

    Raises ValueError when it is not a sequence of n values.
    """
    if hasattr(values, "tolist"):
        values = values.tolist()
    if not isinstance(values, Sequence) or isinstance(values, (str, bytes)):
        raise ValueError(f"returned {_short(values)}, not a list of {n} scores")
    if len(values) != n:
        raise ValueError(f"returned {len(values)} scores for {n} completions")
    out: list[float | ValueError] = []
    for value in values:
        try:
            out.append(as_score(value))
        except ValueError as exc:
            out.append(exc)
    return out


def to_scores(value: Any, batched: bool, n: int) -> list[float | ValueError]:
    """n scores from one call's return value: a batched call's list, or a single call's number."""
    if batched:
        return as_scores(value, n)
    try:
        return [as_score(value)]
    except ValueError as exc:
        return [exc]


def first_line(exc: BaseException) -> str:
    """``TypeName: first line of the message`` (at most 300 characters)."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return line[:300]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
