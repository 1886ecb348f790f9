"""Running reward calls under a time limit, in threads or in warm worker processes.

``thread``: the call runs on a daemon thread of a :class:`ThreadRunner`; past its limit the caller
stops waiting, scores it as a timeout and adds a thread in its place. Python cannot stop a thread,
so a stuck call keeps its thread (and any CPU it burns) until it returns.
``process``: the call runs in a :class:`FunctionPool` worker (the same warm-pool mechanism as the
math-verify workers, :mod:`.pool`); past its limit the worker's process group is killed and a
replacement starts in the background, so nothing of the stuck call survives.

Either way a call yields an :class:`Outcome`: one entry per sample (a float score or a
:class:`Failure`) and how many math-verify comparisons made during the call timed out.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .pool import STARTUP_TIMEOUT, WorkerPool, WorkerStartError, verifier_timeouts_in_thread
from .userfn import first_line, to_scores

__all__ = ["Failure", "Outcome", "ThreadRunner", "FunctionPool", "call_in_thread", "call_in_process"]


@dataclass(frozen=True)
class Failure:
    """A sample's score could not be computed: ``kind`` is "timeout" or "error"."""

    kind: str
    message: str


Scores = list  # list[float | Failure], one entry per sample of the call


class Outcome(NamedTuple):
    """One call's scores and its math-verify comparisons that timed out (those score 0 inside the
    verifier, so the call itself still succeeds)."""

    scores: Scores
    verifier_timeouts: int = 0


class _Task:
    __slots__ = ("fn", "limit", "started", "done", "result", "abandoned")

    def __init__(self, fn: Callable[[], Any], limit: float) -> None:
        self.fn, self.limit = fn, limit
        self.started: float | None = None
        self.done = threading.Event()
        self.result: Any = None
        self.abandoned = False


class ThreadRunner:
    """``size`` daemon threads running calls, each limited in time from the moment it starts.

    A call still running at its limit is abandoned (its result, if it ever comes, is dropped) and a
    fresh thread replaces the one it holds, so a stuck call never blocks later ones or the exit.
    Threads start with the first call and end after ``idle_s`` seconds without work.
    """

    idle_s = 30.0

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._threads = 0
        self.abandoned = 0  # calls given up on (their threads may still be running)

    def _spawn(self) -> None:
        self._threads += 1
        threading.Thread(target=self._loop, name="mhpo-reward", daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                task: _Task = self._queue.get(timeout=self.idle_s)
            except queue.Empty:
                with self._cond:  # run() enqueues under this lock: no task can slip in unseen
                    if self._queue.empty():
                        self._threads -= 1
                        return
                continue
            with self._cond:
                task.started = time.monotonic()
                self._cond.notify_all()
            try:
                result = task.fn()
            except BaseException as exc:  # noqa: BLE001 -- keep the thread; the caller sees the error
                result = exc
            with self._cond:
                task.result = result
                task.done.set()
                if task.abandoned:  # a replacement already took this thread's place
                    return

    def run(self, jobs: list[tuple[Callable[[], Any], float]]) -> list[Any]:
        """Run ``(fn, limit_seconds)`` jobs; each result is fn's return value, the exception it raised,
        or None when it did not finish within its limit."""
        tasks = [_Task(fn, limit) for fn, limit in jobs]
        with self._cond:
            while self._threads < self.size:
                self._spawn()
            for task in tasks:
                self._queue.put(task)
        results = []
        for task in tasks:  # FIFO: when we reach a task, every earlier one is done or abandoned
            with self._cond:
                while task.started is None:
                    self._cond.wait()
                started = task.started
            finished = task.done.wait(max(0.0, started + task.limit - time.monotonic()))
            with self._cond:
                if not finished and not task.done.is_set():
                    task.abandoned = True  # its thread no longer counts; a fresh one takes its place
                    self.abandoned += 1
                    self._threads -= 1
                    self._spawn()
                    results.append(None)
                    continue
            results.append(task.result)
        return results


def _failures(kind: str, message: str, n: int) -> Scores:
    return [Failure(kind, message)] * n


def call_in_thread(fn: Callable, args: tuple, kwargs: dict, batched: bool, n: int) -> Outcome:
    """Call ``fn(*args, **kwargs)`` here and validate its scores (errors become Failures)."""
    before = verifier_timeouts_in_thread()
    try:
        scores = to_scores(fn(*args, **kwargs), batched, n)
    except Exception as exc:  # the user's code
        return Outcome(_failures("error", first_line(exc), n))
    return Outcome([s if isinstance(s, float) else Failure("error", first_line(s)) for s in scores],
                   verifier_timeouts_in_thread() - before)


class FunctionPool(WorkerPool):
    """Warm worker processes (``_fn_worker``) that each load one reward function."""

    def __init__(self, name: str, base_dir: str | Path | None, options: dict, size: int, timeout: float) -> None:
        config = {"name": name, "base_dir": str(base_dir) if base_dir is not None else None, "options": options}
        argv = [sys.executable, "-m", "mhpo_vl.rewards._fn_worker", json.dumps(config, default=str)]
        # Workers print to the trainer's stderr; a warm-up may load a model, so allow it time.
        super().__init__(argv, size, timeout, startup_timeout=max(STARTUP_TIMEOUT, 120.0), stderr=None,
                         label=f"reward {name!r}")


def call_in_process(pool: FunctionPool, args: tuple, kwargs: dict, batched: bool, n: int,
                    timeout: float) -> Outcome:
    """Run one call in a worker of ``pool``; a timeout kills (and replaces) the worker."""
    request = {"c": args[0], "r": args[1], "k": kwargs, "b": batched, "n": n}
    try:
        reply = pool.call(request, timeout)
    except WorkerStartError as exc:
        return Outcome(_failures("error", str(exc), n))
    except RuntimeError as exc:  # the worker died mid-call (a crash or exit in the user's code)
        return Outcome(_failures("error", first_line(exc), n))
    if reply is None:
        return Outcome(_failures("timeout", f"no result within {timeout:g} s (worker killed)", n))
    if "x" in reply:
        return Outcome(_failures("error", str(reply["x"]), n))
    values, errors = reply.get("v") or [], reply.get("e") or {}
    if len(values) != n:
        return Outcome(_failures("error", f"worker sent {len(values)} scores for {n} completions", n))
    return Outcome([Failure("error", str(errors.get(str(i), "no score"))) if v is None else float(v)
                    for i, v in enumerate(values)], int(reply.get("t", 0)))
