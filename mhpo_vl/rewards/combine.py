"""``combine``: a weighted sum of reward components that scores a batch in parallel, each call
time-limited, isolated and counted.

Keyword policy: each component is called as ``fn(completion, reference, **kwargs)`` where kwargs are
the sample's record fields (``id``, ``prompt``, ``answer_type``, ``choices``, ``response_length``, ...)
overlaid by the recipe's options for that component. A function that takes ``**kwargs`` receives
every record field; any other function receives only the fields it names. A batched component
(``@reward_fn(batched=True)`` or listed in ``batched``) is called once per batch as
``fn(completions, references, **fields)`` with each field a list. Options are checked once, when the
recipe is combined: a misspelt option is a ConfigError naming it.

Limits: every call has a time limit (``timeouts``; 10 s for user functions, a 60 s hang guard for
the built-ins, which bound themselves). User functions (``"file.py:fn"``) run in warm worker
processes by default, built-ins in threads (``isolation``). A call that times out, raises, or
returns something other than a finite number scores the component's ``on_error`` value (default 0),
is counted in :class:`BatchScores` and is logged once per component and record id.
"""

from __future__ import annotations

import atexit
import logging
import math
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UserError
from .isolation import Failure, FunctionPool, ThreadRunner, call_in_process, call_in_thread
from .pool import WorkerStartError, get_pool, pool_stats
from .registry import _BY_TYPE, REWARDS, _did_you_mean, accuracy, resolve_reward
from .userfn import first_line, run_warm_up, signature_fields, spec_of

__all__ = ["combine", "reward_from_config", "CombinedReward", "BatchScores", "USER_TIMEOUT_S", "BUILTIN_TIMEOUT_S"]

log = logging.getLogger("mhpo_vl.rewards")

#: Default time limit of one call of a user function (a batched call counts as one), seconds.
USER_TIMEOUT_S = 10.0
#: Default limit for built-in verifiers: only a hang guard, they bound themselves (~1 s).
BUILTIN_TIMEOUT_S = 60.0
ISOLATIONS = ("thread", "process")
_POSITIONAL = ("completion", "reference")


@dataclass
class BatchScores:
    """Per-sample totals and per-component scores of one batch, plus throughput and failures.

    ``timeouts_by`` / ``errors_by``: per component, how many samples timed out / failed: a call that
    timed out / raised or returned a non-finite or non-numeric value (the sample scores ``on_error``),
    and in ``timeouts_by`` also a sample whose call hit a math-verify time limit (that comparison
    scores 0 inside the verifier; the sample is not a failure). A sample counts once per component.
    ``failed``: samples with at least one component that scored ``on_error``. ``timeouts``: math-verify
    comparisons of the whole process that hit their time limit during the batch. Unpacks as
    ``total, components = scores``.
    """

    total: list[float]
    components: dict[str, list[float]]
    seconds: float = 0.0
    throughput: float = 0.0  # completions per second
    timeouts: int = 0
    stats: dict = field(default_factory=dict)
    timeouts_by: dict[str, int] = field(default_factory=dict)
    errors_by: dict[str, int] = field(default_factory=dict)
    failed: int = 0

    def __iter__(self):
        yield self.total
        yield self.components


@dataclass
class _Component:
    name: str
    weight: float
    fn: Callable[..., float]
    options: dict
    takes_any: bool  # the function has **kwargs
    params: frozenset  # keyword-capable parameter names besides completion and reference
    batched: bool
    isolation: str
    timeout: float
    on_error: float
    pool: FunctionPool | None = None

    def kwargs(self, record: Mapping[str, Any]) -> dict:
        """One sample's keyword arguments: its record fields the function takes, then the options."""
        fields = {k: v for k, v in record.items() if k not in _POSITIONAL and (self.takes_any or k in self.params)}
        return fields | self.options

    def batch_kwargs(self, records: Sequence[Mapping[str, Any]]) -> dict:
        """A batch's keyword arguments: each record field as a list aligned with the samples."""
        keys = dict.fromkeys(k for r in records for k in r)
        keys = [k for k in keys if k not in _POSITIONAL and (self.takes_any or k in self.params)]
        return {k: [r.get(k) for r in records] for k in keys} | self.options

    def job(self, args: tuple, kwargs: dict, n: int) -> tuple[Callable[[], list], float]:
        """A (call, runner limit) pair for :meth:`ThreadRunner.run`."""
        if self.pool is not None:  # the pool enforces the limit; the runner's is a guard that also
            # covers waiting for a replacement worker to start
            return (lambda: call_in_process(self.pool, args, kwargs, self.batched, n, self.timeout),
                    self.timeout + self.pool.startup_timeout + 10.0)
        return (lambda: call_in_thread(self.fn, args, kwargs, self.batched, n)), self.timeout


def _option_names(fn: Callable[..., Any], takes_any: bool, named: frozenset) -> frozenset | None:
    """Options a recipe may set for ``fn`` (None: anything). Built-ins list theirs explicitly."""
    if fn is accuracy:
        return frozenset().union(*(signature_fields(f)[1] for f in _BY_TYPE.values())) - {"answer_type", "choices"}
    if fn in REWARDS.values():
        return named
    return None if takes_any else named


def _per_component(kind: str, value: Any, names: Sequence[str]) -> dict[str, Any]:
    """A per-component setting given as one value for all or as ``{component: value}``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        return dict.fromkeys(names, value)
    for key in value:
        if key not in names:
            raise ConfigError(f"reward.{kind}: {key!r} is not a component{_did_you_mean(key, list(names))}")
    return dict(value)


def _is_user(name: str) -> bool:
    return name not in REWARDS


class CombinedReward:
    """Callable batch scorer built by :func:`combine`."""

    def __init__(
        self,
        components: Mapping[str, float],
        options: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        base_dir: str | Path | None = None,
        workers: int | None = None,
        timeouts: Mapping[str, float] | float | None = None,
        isolation: Mapping[str, str] | str | None = None,
        on_error: Mapping[str, float] | float | None = None,
        batched: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(components, Mapping) or not components:
            raise ConfigError("rewards: need a non-empty mapping of component name -> weight")
        names = list(components)
        options = _per_component("options", options, names)
        timeouts = _per_component("timeouts", timeouts, names)
        isolation = _per_component("isolation", isolation, names)
        on_error = _per_component("on_error", on_error, names)
        batched = _per_component("batched", dict.fromkeys(batched or [], True), names)
        base = Path(base_dir) if base_dir is not None else None
        self.workers = workers or max(2, get_pool().size)
        self.components = [
            self._component(n, w, options.get(n) or {}, base, timeouts.get(n), isolation.get(n), on_error.get(n),
                            bool(batched.get(n)))
            for n, w in components.items()
        ]
        self._runner = ThreadRunner(self.workers)
        self._logged: set[tuple] = set()
        _LIVE.add(self)

    def _component(self, name: str, weight: Any, options: Mapping[str, Any], base_dir: Path | None,
                   timeout: Any, isolation: Any, on_error: Any, batched: bool) -> _Component:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ConfigError(f"reward {name!r}: weight must be a finite number, got {weight!r}")
        fn = resolve_reward(name, base_dir)
        takes_any, named = signature_fields(fn)
        allowed = _option_names(fn, takes_any, named)
        for key in options:
            if allowed is not None and key not in allowed:
                raise ConfigError(f"reward {name!r}: unknown option {key!r}{_did_you_mean(key, sorted(allowed))}")
        user = _is_user(name)
        timeout = (USER_TIMEOUT_S if user else BUILTIN_TIMEOUT_S) if timeout is None else timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigError(f"reward.timeouts.{name}: must be a number of seconds > 0, got {timeout!r}")
        isolation = ("process" if user else "thread") if isolation is None else isolation
        if isolation not in ISOLATIONS:
            raise ConfigError(f"reward.isolation.{name}: {isolation!r} is not one of {', '.join(ISOLATIONS)}")
        on_error = 0.0 if on_error is None else on_error
        if isinstance(on_error, bool) or not isinstance(on_error, (int, float)) or not math.isfinite(on_error):
            raise ConfigError(f"reward.on_error.{name}: must be a finite number, got {on_error!r}")
        batched = batched or spec_of(fn).batched
        comp = _Component(name, float(weight), fn, dict(options), takes_any, named, batched, isolation,
                          float(timeout), float(on_error))
        if isolation == "process":
            comp.pool = FunctionPool(name, base_dir, comp.options, 1 if batched else self.workers, comp.timeout)
        return comp

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.components]

    def score(self, completion: str, reference: Any, **record: Any) -> tuple[float, dict[str, float]]:
        """Total and per-component scores of one sample."""
        scores = self([completion], [reference], [record])
        return scores.total[0], {name: values[0] for name, values in scores.components.items()}

    def warm_up(self) -> None:
        """Start the math-verify and reward worker processes and run declared warm-ups now, rather
        than inside the first step. Raises UserError when a reward's workers cannot start."""
        get_pool().warm_up()
        for comp in self.components:
            try:
                if comp.pool is not None:
                    comp.pool.warm_up()
                else:
                    run_warm_up(comp.fn, comp.options)
            except WorkerStartError as exc:
                raise UserError(f"reward {comp.name!r}: {exc}") from None
            except Exception as exc:
                raise UserError(f"reward {comp.name!r}: warm-up failed: {first_line(exc)}") from None

    def close(self) -> None:
        """Stop the reward worker processes (also done at interpreter exit)."""
        for comp in self.components:
            if comp.pool is not None:
                comp.pool.close()

    def _jobs(self, completions: Sequence[str], references: Sequence[Any],
              records: Sequence[Mapping[str, Any]]) -> tuple[list, list]:
        """Runner jobs and, for each, (component, sample indices): batched calls first, then per sample."""
        n = len(completions)
        jobs, slots = [], []
        for comp in self.components:
            if comp.batched:
                jobs.append(comp.job((list(completions), list(references)), comp.batch_kwargs(records), n))
                slots.append((comp, range(n)))
        for i in range(n):
            for comp in self.components:
                if not comp.batched:
                    jobs.append(comp.job((completions[i], references[i]), comp.kwargs(records[i]), 1))
                    slots.append((comp, range(i, i + 1)))
        return jobs, slots

    def _report(self, comp: _Component, failure: Failure, record: Mapping[str, Any], index: int) -> None:
        rid = record.get("id")
        key = (comp.name, rid) if rid is not None else (comp.name, None, failure.message)
        if key in self._logged:
            return
        self._logged.add(key)
        what = "timed out" if failure.kind == "timeout" else "failed"
        where = f"record {rid!r}" if rid is not None else f"sample {index}"
        log.warning("reward %r %s on %s: %s; scored %g (logged once per record)", comp.name, what, where,
                    failure.message, comp.on_error)

    def __call__(
        self,
        completions: Sequence[str],
        references: Sequence[Any],
        records: Sequence[Mapping[str, Any]] | None = None,
    ) -> BatchScores:
        """Score a batch in parallel; ``records[i]`` holds sample i's fields (id, answer_type, choices,
        response_length, ...). Returns :class:`BatchScores`."""
        n = len(completions)
        records = list(records) if records is not None else [{}] * n
        if len(references) != n or len(records) != n:
            raise ValueError(
                f"rewards: got {n} completions, {len(references)} references, {len(records)} records"
            )
        before = pool_stats()["timeouts"]
        start = time.perf_counter()
        jobs, slots = self._jobs(completions, references, records)
        parts: dict[str, list] = {name: [0.0] * n for name in self.names}
        timeouts_by, errors_by = dict.fromkeys(self.names, 0), dict.fromkeys(self.names, 0)
        failed = [False] * n
        for (comp, index), result, (_, limit) in zip(slots, self._runner.run(jobs), jobs):
            verifier_timeouts = 0
            if result is None:
                left = "waited for a worker" if comp.pool is not None else "thread left running"
                result = [Failure("timeout", f"no result within {limit:g} s ({left})")] * len(index)
            elif isinstance(result, BaseException):
                result = [Failure("error", first_line(result))] * len(index)
            else:
                result, verifier_timeouts = result
            # a sample already failed is counted below; at most one per sample that still scored
            timeouts_by[comp.name] += min(verifier_timeouts, sum(not isinstance(v, Failure) for v in result))
            for i, value in zip(index, result):
                if isinstance(value, Failure):
                    (timeouts_by if value.kind == "timeout" else errors_by)[comp.name] += 1
                    failed[i] = True
                    self._report(comp, value, records[i], i)
                    value = comp.on_error
                parts[comp.name][i] = value
        seconds = time.perf_counter() - start
        stats = pool_stats()
        return BatchScores(
            total=[sum(c.weight * parts[c.name][i] for c in self.components) for i in range(n)],
            components=parts,
            seconds=seconds,
            throughput=n / seconds if seconds > 0 else float("inf"),
            timeouts=stats["timeouts"] - before,
            stats=stats,
            timeouts_by=timeouts_by,
            errors_by=errors_by,
            failed=sum(failed),
        )


_LIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for reward in list(_LIVE):
        reward.close()


def combine(
    components: Mapping[str, float],
    options: Mapping[str, Mapping[str, Any]] | None = None,
    **limits: Any,
) -> CombinedReward:
    """A weighted reward from registry names and ``"path/to/file.py:function"`` user functions.

    ``limits``: ``base_dir``, ``workers``, ``timeouts``, ``isolation``, ``on_error``, ``batched``
    (see :class:`CombinedReward` and the module docstring).

    >>> reward = combine({"math_accuracy": 0.9, "format_reward": 0.1})
    >>> total, parts = reward(["<think>1+1</think><answer>2</answer>"], ["2"])
    >>> total, parts["format_reward"]
    ([1.0], [1.0])
    """
    return CombinedReward(components, options, **limits)


def reward_from_config(cfg: Any, base_dir: str | Path | None = None) -> CombinedReward:
    """The trainer's reward from a ``RewardConfig`` (``reward:`` section of a recipe)."""
    return CombinedReward(cfg.components, cfg.options, base_dir=base_dir, workers=cfg.num_workers or None,
                          timeouts=cfg.timeouts, isolation=cfg.isolation, on_error=cfg.on_error,
                          batched=cfg.batched)
