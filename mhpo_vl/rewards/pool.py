"""A small pool of math-verify worker processes with a hard per-call time limit.

Why: math-verify's timeout uses ``signal.alarm``, which only works on the main thread, and a
C-level sympy computation cannot be interrupted at all. So each comparison runs in a warm worker
process (``_mv_worker.py``, started with ``subprocess`` so it works from any thread, from daemonic
worker processes and beside torch); a call that overruns its deadline gets its worker killed and
replaced, and scores 0. Workers start lazily on first use, exit on EOF when the parent goes, and are
stopped at interpreter exit. Messages are JSON lines (no pickle).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["VerifierPool", "WorkerStartError", "get_pool", "pool_stats", "shutdown_pool", "configure_pool"]

_WORKER = Path(__file__).with_name("_mv_worker.py")
#: Default compute budget per comparison, seconds.
DEFAULT_TIMEOUT = 1.0
#: Budget for a fresh worker to import math-verify and report ready.
STARTUP_TIMEOUT = 30.0


def _default_size() -> int:
    env = os.environ.get("MHPO_REWARD_WORKERS")
    if env:
        return max(1, int(env))
    return min(8, max(4, os.cpu_count() or 2))


class WorkerStartError(RuntimeError):
    """Worker processes cannot start (e.g. math-verify is not importable by ``sys.executable``)."""


class _DeadWorker(Exception):
    """The worker was gone before the request was sent (safe to retry on a fresh one)."""


class _Worker:
    """One worker process and its line buffer; used by one thread at a time."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(_WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        self._fd = self.proc.stdout.fileno()
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self._buf = b""
        self.ready = False

    def read_line(self, deadline: float) -> dict | None:
        """The next JSON line, or None when the deadline passes or the worker dies."""
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poll.poll(remaining * 1000.0):
                return None
            chunk = os.read(self._fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def ask(self, request: dict, timeout: float) -> dict | None:
        """Send one request; the reply, or None on timeout. Raises _DeadWorker if it cannot be sent."""
        if not self.ready:
            hello = self.read_line(time.monotonic() + STARTUP_TIMEOUT)
            if not hello or not hello.get("ready"):
                raise _DeadWorker("worker did not start")
            self.ready = True
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise _DeadWorker from exc
        return self.read_line(time.monotonic() + timeout)

    def stop(self, kill: bool = False) -> None:
        try:
            if kill:
                self.proc.kill()
            else:
                self.proc.stdin.close()
            self.proc.wait(timeout=0.5 if not kill else 5.0)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass


@dataclass
class PoolStats:
    """Counters since the pool started; ``timeouts`` counts both inner timers and killed workers."""

    calls: int = 0
    timeouts: int = 0
    killed: int = 0
    errors: int = 0
    started: int = 0
    busy_seconds: float = 0.0


class VerifierPool:
    """Up to ``size`` warm worker processes; :meth:`equal` is safe to call from any thread."""

    def __init__(self, size: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.size = size or _default_size()
        self.timeout = timeout
        self.stats = PoolStats()
        self._idle: list[_Worker] = []
        self._count = 0  # live workers, including the one starting
        self._starting = False
        self._failed_starts = 0
        self._cond = threading.Condition()
        self._closed = False

    def _start_one(self) -> None:
        """Start a worker and wait for its ready line (runs in a background thread).

        Workers start one at a time, so a cold burst of calls is served by the first ready worker
        instead of every caller waiting while several interpreters import sympy on the same cores.
        """
        worker = None
        try:
            worker = _Worker()
            hello = worker.read_line(time.monotonic() + STARTUP_TIMEOUT)
            worker.ready = bool(hello and hello.get("ready"))
        except OSError:
            pass
        ok = worker is not None and worker.ready
        with self._cond:
            self._starting = False
            self._failed_starts = 0 if ok else self._failed_starts + 1
            keep = ok and not self._closed
            if keep:
                self._idle.append(worker)
            else:
                self._count -= 1
            self._cond.notify_all()
        if worker is not None and not keep:
            worker.stop(kill=not ok)

    def _acquire(self) -> _Worker:
        deadline = time.monotonic() + STARTUP_TIMEOUT + 10 * self.timeout
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("the math-verify worker pool is shut down")
                if self._failed_starts >= 3:
                    raise WorkerStartError(
                        f"math-verify workers fail to start; run `{sys.executable} {_WORKER}`"
                    )
                if self._idle:
                    return self._idle.pop()
                if self._count < self.size and not self._starting:
                    self._count += 1
                    self._starting = True
                    self.stats.started += 1
                    threading.Thread(target=self._start_one, name="mhpo-reward-start", daemon=True).start()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError("no math-verify worker became free in time")
                self._cond.wait(remaining)

    def _release(self, worker: _Worker, healthy: bool) -> None:
        if not healthy:
            worker.stop(kill=True)
        with self._cond:
            if healthy and not self._closed:
                self._idle.append(worker)
            else:
                self._count -= 1
            self._cond.notify()
        if healthy and self._closed:
            worker.stop()

    def equal(self, gold: str, pred: str, timeout: float | None = None) -> bool | None:
        """math-verify equality of two answer strings; None when the call timed out or failed."""
        timeout = self.timeout if timeout is None else timeout
        request = {"g": gold, "p": pred, "t": max(0.05, 0.9 * timeout)}  # inner timer fires first
        reply: dict | None = None
        start = time.monotonic()
        for _ in range(2):  # a worker found dead before the request is replaced once
            worker = self._acquire()
            start = time.monotonic()
            try:
                reply = worker.ask(request, timeout)
            except _DeadWorker:
                self._release(worker, healthy=False)
                continue
            self._release(worker, healthy=reply is not None)
            break
        else:
            worker = None
        with self._cond:
            self.stats.calls += 1
            self.stats.busy_seconds += time.monotonic() - start
            if worker is None:
                self.stats.errors += 1
            elif reply is None:
                self.stats.timeouts += 1
                self.stats.killed += 1
            elif reply.get("timeout"):
                self.stats.timeouts += 1
            elif reply.get("error"):
                self.stats.errors += 1
        if reply is None or reply.get("timeout"):
            return None
        return bool(reply.get("r"))

    def warm_up(self) -> None:
        """Start every worker now and wait until all are ready (e.g. before a timed benchmark)."""
        workers = [self._acquire() for _ in range(self.size)]
        for worker in workers:
            self._release(worker, healthy=True)

    def close(self) -> None:
        """Stop idle workers now; busy ones are stopped when their call returns."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for worker in idle:
            worker.stop()


_POOL: VerifierPool | None = None
_POOL_LOCK = threading.Lock()
_CONFIG: dict = {}


def get_pool() -> VerifierPool:
    """The process-wide pool, created on first use."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._closed:
            _POOL = VerifierPool(**_CONFIG)
        return _POOL


def configure_pool(size: int | None = None, timeout: float | None = None) -> None:
    """Set the worker count and per-call timeout (seconds) for the next pool; restarts a running one."""
    if size is not None and size < 1:
        raise ValueError(f"reward pool size must be >= 1, got {size}")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"reward timeout must be > 0 seconds, got {timeout}")
    _CONFIG.update({k: v for k, v in {"size": size, "timeout": timeout}.items() if v is not None})
    shutdown_pool()


def pool_stats() -> dict:
    """A snapshot of the pool counters (calls, timeouts, killed, errors, started, busy_seconds)."""
    pool = _POOL
    if pool is None:
        return asdict(PoolStats()) | {"size": 0}
    with pool._cond:
        snapshot = asdict(pool.stats)
    return snapshot | {"size": pool.size}


def shutdown_pool() -> None:
    """Stop all workers (also registered with atexit)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.close()


def _forget_after_fork() -> None:
    """A forked child must not share the parent's pipes: it starts its own pool when needed."""
    global _POOL, _POOL_LOCK
    _POOL = None
    _POOL_LOCK = threading.Lock()


atexit.register(shutdown_pool)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
