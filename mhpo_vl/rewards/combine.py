"""``combine``: a weighted sum of reward components that scores a batch in parallel.

Keyword policy: each component is called as ``fn(completion, reference, **kwargs)`` where kwargs are
the sample's record fields (``answer_type``, ``choices``, ``response_length``, ...) overlaid by the
recipe's options for that component. A function that takes ``**kwargs`` receives every record field;
any other function receives only the fields it names. Options are checked once, when the recipe is
combined: a misspelt option is a ConfigError naming it.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .pool import get_pool, pool_stats
from .registry import _BY_TYPE, REWARDS, _did_you_mean, accuracy, resolve_reward

__all__ = ["combine", "CombinedReward", "BatchScores"]

_POSITIONAL = ("completion", "reference")


@dataclass
class BatchScores:
    """Per-sample totals and per-component scores of one batch, plus throughput and timeouts.

    Unpacks as ``total, components = scores``.
    """

    total: list[float]
    components: dict[str, list[float]]
    seconds: float = 0.0
    throughput: float = 0.0  # completions per second
    timeouts: int = 0  # math-verify comparisons that hit the time limit during this batch
    stats: dict = field(default_factory=dict)

    def __iter__(self):
        yield self.total
        yield self.components


@dataclass(frozen=True)
class _Component:
    name: str
    weight: float
    fn: Callable[..., float]
    options: dict
    takes_any: bool  # the function has **kwargs
    params: frozenset  # keyword-capable parameter names besides completion and reference

    def __call__(self, completion: str, reference: Any, record: Mapping[str, Any]) -> float:
        fields = {
            k: v for k, v in record.items() if k not in _POSITIONAL and (self.takes_any or k in self.params)
        }
        value = self.fn(completion, reference, **(fields | self.options))
        score = float(value)
        if not math.isfinite(score):
            raise ValueError(f"returned {value!r}")
        return score


def _signature(fn: Callable[..., Any]) -> tuple[bool, frozenset]:
    params = inspect.signature(fn).parameters.values()
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    named = frozenset(
        p.name
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in _POSITIONAL
    )
    return takes_any, named


def _option_names(fn: Callable[..., Any], takes_any: bool, named: frozenset) -> frozenset | None:
    """Options a recipe may set for ``fn`` (None: anything). Built-ins list theirs explicitly."""
    if fn is accuracy:
        return frozenset().union(*(_signature(f)[1] for f in _BY_TYPE.values())) - {"answer_type", "choices"}
    if fn in REWARDS.values():
        return named
    return None if takes_any else named


def _component(name: str, weight: Any, options: Mapping[str, Any], base_dir: Path | None) -> _Component:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise ConfigError(f"reward {name!r}: weight must be a finite number, got {weight!r}")
    fn = resolve_reward(name, base_dir)
    takes_any, named = _signature(fn)
    allowed = _option_names(fn, takes_any, named)
    for key in options:
        if allowed is not None and key not in allowed:
            raise ConfigError(f"reward {name!r}: unknown option {key!r}{_did_you_mean(key, sorted(allowed))}")
    return _Component(name, float(weight), fn, dict(options), takes_any, named)


class CombinedReward:
    """Callable batch scorer built by :func:`combine`."""

    def __init__(
        self,
        components: Mapping[str, float],
        options: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        base_dir: str | Path | None = None,
        workers: int | None = None,
    ) -> None:
        if not isinstance(components, Mapping) or not components:
            raise ConfigError("rewards: need a non-empty mapping of component name -> weight")
        options = dict(options or {})
        for key in options:
            if key not in components:
                raise ConfigError(
                    f"reward options for {key!r}, which is not a component{_did_you_mean(key, list(components))}"
                )
        base = Path(base_dir) if base_dir is not None else None
        self.components = [_component(n, w, options.get(n) or {}, base) for n, w in components.items()]
        self.workers = workers

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.components]

    def score(self, completion: str, reference: Any, **record: Any) -> tuple[float, dict[str, float]]:
        """Total and per-component scores of one sample."""
        parts = {}
        for comp in self.components:
            try:
                parts[comp.name] = comp(completion, reference, record)
            except Exception as exc:
                raise RuntimeError(
                    f"reward component {comp.name!r} failed: {type(exc).__name__}: {exc}"
                ) from exc
        return sum(c.weight * parts[c.name] for c in self.components), parts

    def warm_up(self) -> None:
        """Start the math-verify workers now rather than on the first batch."""
        get_pool().warm_up()

    def __call__(
        self,
        completions: Sequence[str],
        references: Sequence[Any],
        records: Sequence[Mapping[str, Any]] | None = None,
    ) -> BatchScores:
        """Score a batch in parallel; ``records[i]`` holds sample i's fields (answer_type, choices,
        response_length, ...). Returns :class:`BatchScores`."""
        n = len(completions)
        records = list(records) if records is not None else [{}] * n
        if len(references) != n or len(records) != n:
            raise ValueError(
                f"rewards: got {n} completions, {len(references)} references, {len(records)} records"
            )
        before = pool_stats()["timeouts"]
        start = time.perf_counter()
        workers = self.workers or max(2, get_pool().size)
        with ThreadPoolExecutor(max_workers=min(workers, max(1, n))) as executor:
            rows = list(
                executor.map(lambda i: self.score(completions[i], references[i], **records[i]), range(n))
            )
        seconds = time.perf_counter() - start
        stats = pool_stats()
        return BatchScores(
            total=[total for total, _ in rows],
            components={name: [parts[name] for _, parts in rows] for name in self.names},
            seconds=seconds,
            throughput=n / seconds if seconds > 0 else float("inf"),
            timeouts=stats["timeouts"] - before,
            stats=stats,
        )


def combine(
    components: Mapping[str, float],
    options: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    base_dir: str | Path | None = None,
    workers: int | None = None,
) -> CombinedReward:
    """A weighted reward from registry names and ``"path/to/file.py:function"`` user functions.

    >>> reward = combine({"math_accuracy": 0.9, "format_reward": 0.1})
    >>> total, parts = reward(["<think>1+1</think><answer>2</answer>"], ["2"])
    >>> total, parts["format_reward"]
    ([1.0], [1.0])
    """
    return CombinedReward(components, options, base_dir=base_dir, workers=workers)
