"""Pools of warm worker processes with a hard per-call time limit: math-verify and user rewards.

Why: math-verify's timeout uses ``signal.alarm``, which only works on the main thread, and a
C-level sympy computation cannot be interrupted at all; a user reward can loop forever. So each call
runs in a warm worker process (started with ``subprocess`` so it works from any thread, from daemonic
worker processes and beside torch); a call that overruns its deadline gets its worker (and the
worker's process group) killed, and a replacement starts at once in the background. Workers start
lazily on first use (or in :meth:`WorkerPool.warm_up`), exit on EOF when the parent goes, and are
stopped at interpreter exit. Messages are JSON lines (no pickle).

:class:`WorkerPool` is the generic mechanism (any worker command that speaks the protocol: a
``{"ready": true}`` line first, then one reply line per request line); :class:`VerifierPool` runs
math-verify comparisons (``_mv_worker.py``) and :mod:`.isolation` runs user reward functions.
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

__all__ = [
    "WorkerPool",
    "VerifierPool",
    "WorkerStartError",
    "WorkerDied",
    "get_pool",
    "pool_stats",
    "shutdown_pool",
    "configure_pool",
    "verifier_timeouts_in_thread",
]

_WORKER = Path(__file__).with_name("_mv_worker.py")
#: Default compute budget per comparison, seconds.
DEFAULT_TIMEOUT = 1.0
#: Budget for a fresh worker to import math-verify and report ready.
STARTUP_TIMEOUT = 30.0


_THREAD = threading.local()


def verifier_timeouts_in_thread() -> int:
    """How many :meth:`VerifierPool.equal` calls made on this thread have timed out so far (a running
    count: callers take differences around the code they attribute timeouts to)."""
    return getattr(_THREAD, "timeouts", 0)


def _default_size() -> int:
    env = os.environ.get("MHPO_REWARD_WORKERS")
    if env:
        return max(1, int(env))
    return min(8, max(4, os.cpu_count() or 2))


class WorkerStartError(RuntimeError):
    """Worker processes cannot start (e.g. math-verify is not importable by ``sys.executable``)."""


class WorkerDied(RuntimeError):
    """The worker exited while handling a request (a crash, not a timeout)."""


class _DeadWorker(Exception):
    """The worker was gone before the request was sent (safe to retry on a fresh one)."""


class _Worker:
    """One worker process (in its own process group) and its line buffer; used by one thread at a time."""

    def __init__(self, argv: list[str] | None = None, stderr: int | None = subprocess.DEVNULL) -> None:
        self.proc = subprocess.Popen(
            argv or [sys.executable, str(_WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            close_fds=True,
            start_new_session=True,  # a kill also reaches what the worker started (user code may spawn)
        )
        self._fd = self.proc.stdout.fileno()
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self._buf = b""
        self.ready = False

    def read_line(self, deadline: float) -> dict | None:
        """The next JSON line, or None when the deadline passes. Raises WorkerDied on EOF."""
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poll.poll(remaining * 1000.0):
                return None
            chunk = os.read(self._fd, 65536)
            if not chunk:
                raise WorkerDied(f"worker exited (code {self.proc.poll()})")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def hello(self, timeout: float) -> dict:
        """The worker's first line (``{"ready": true}`` or ``{"ready": false, "error": ...}``)."""
        try:
            hello = self.read_line(time.monotonic() + timeout)
        except WorkerDied as exc:
            hello = {"ready": False, "error": str(exc)}
        if hello is None:
            hello = {"ready": False, "error": f"not ready within {timeout:g} s"}
        self.ready = bool(hello.get("ready"))
        return hello

    def ask(self, request: dict, timeout: float) -> dict | None:
        """Send one request; the reply, or None on timeout. Raises _DeadWorker if it cannot be sent
        and WorkerDied if the worker exits before replying."""
        if not self.ready and not self.hello(STARTUP_TIMEOUT).get("ready"):
            raise _DeadWorker("worker did not start")
        try:
            self.proc.stdin.write((json.dumps(request, default=str) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise _DeadWorker from exc
        return self.read_line(time.monotonic() + timeout)

    def stop(self, kill: bool = False) -> None:
        try:
            if kill:
                try:
                    os.killpg(self.proc.pid, 9)
                except OSError:
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


class WorkerPool:
    """Up to ``size`` warm worker processes running ``argv``; :meth:`call` is safe from any thread.

    ``startup_timeout`` bounds a worker's start (its ready line); ``stderr`` is where workers' stderr
    goes (None: the parent's). A worker whose call times out or crashes is killed and a replacement
    starts at once in the background.
    """

    def __init__(
        self,
        argv: list[str],
        size: int,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        startup_timeout: float = STARTUP_TIMEOUT,
        stderr: int | None = subprocess.DEVNULL,
        label: str = "worker",
    ) -> None:
        self.argv = list(argv)
        self.size = size
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.stderr = stderr
        self.label = label
        self.stats = PoolStats()
        self.start_error = ""  # the last failed start's reason
        self._idle: list[_Worker] = []
        self._count = 0  # live workers, including the one starting
        self._starting = False
        self._waiting = 0  # threads blocked in _acquire
        self._failed_starts = 0
        self._cond = threading.Condition()
        self._closed = False

    def _start_one(self) -> None:
        """Start a worker and wait for its ready line (runs in a background thread).

        Workers start one at a time, so a cold burst of calls is served by the first ready worker
        instead of every caller waiting while several interpreters import on the same cores.
        """
        worker, hello = None, {"ready": False, "error": "cannot start"}
        try:
            worker = _Worker(self.argv, self.stderr)
            hello = worker.hello(self.startup_timeout)
        except OSError as exc:
            hello = {"ready": False, "error": str(exc)}
        ok = worker is not None and worker.ready
        with self._cond:
            self._starting = False
            self._failed_starts = 0 if ok else self._failed_starts + 1
            if not ok:
                self.start_error = str(hello.get("error") or "no ready line")
            keep = ok and not self._closed
            if keep:
                self._idle.append(worker)
            else:
                self._count -= 1
            self._start_if_short()
            self._cond.notify_all()
        if worker is not None and not keep:
            worker.stop(kill=not ok)

    def _start_if_short(self, force: bool = False) -> None:
        """Start one more worker in the background when below size (call with the lock held).

        Without ``force`` only while someone waits for a worker (lazy start); replacements force it.
        """
        if self._closed or self._starting or self._count >= self.size or self._failed_starts >= 3:
            return
        if not force and not self._waiting:
            return
        self._count += 1
        self._starting = True
        self.stats.started += 1
        threading.Thread(target=self._start_one, name=f"mhpo-{self.label}-start", daemon=True).start()

    def _acquire(self) -> _Worker:
        deadline = time.monotonic() + self.startup_timeout + 10 * self.timeout
        with self._cond:
            self._waiting += 1
            try:
                while True:
                    if self._closed:
                        raise RuntimeError(f"the {self.label} pool is shut down")
                    if self._failed_starts >= 3:
                        raise WorkerStartError(f"{self.label} workers fail to start: {self.start_error}")
                    if self._idle:
                        return self._idle.pop()
                    self._start_if_short()
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise RuntimeError(f"no {self.label} worker became free in time")
                    self._cond.wait(remaining)
            finally:
                self._waiting -= 1

    def _release(self, worker: _Worker, healthy: bool) -> None:
        if not healthy:
            worker.stop(kill=True)
        with self._cond:
            if healthy and not self._closed:
                self._idle.append(worker)
            else:
                self._count -= 1
                self._start_if_short(force=True)  # replace a killed worker now, not inside the next call
            self._cond.notify()
        if healthy and self._closed:
            worker.stop()

    def call(self, request: dict, timeout: float | None = None) -> dict | None:
        """Send ``request`` to a free worker; its reply, or None when it did not reply within
        ``timeout`` seconds (the worker is then killed and replaced).

        Raises WorkerDied when the worker exited while handling the request, WorkerStartError when
        workers cannot start. A worker found dead before the request is sent is replaced once.
        """
        timeout = self.timeout if timeout is None else timeout
        reply: dict | None = None
        start = time.monotonic()
        try:
            for attempt in range(2):
                worker = self._acquire()
                start = time.monotonic()
                try:
                    reply = worker.ask(request, timeout)
                except _DeadWorker:
                    self._release(worker, healthy=False)
                    if attempt:
                        raise WorkerDied(f"{self.label} worker died before the request was sent") from None
                    continue
                except WorkerDied:
                    self._release(worker, healthy=False)
                    raise
                self._release(worker, healthy=reply is not None)
                break
        except (WorkerDied, WorkerStartError, RuntimeError):
            with self._cond:
                self.stats.calls += 1
                self.stats.errors += 1
            raise
        with self._cond:
            self.stats.calls += 1
            self.stats.busy_seconds += time.monotonic() - start
            if reply is None:
                self.stats.timeouts += 1
                self.stats.killed += 1
        return reply

    def warm_up(self) -> None:
        """Start every worker now and wait until all are ready (e.g. before the first step).

        Raises WorkerStartError (with the worker's reason) when they cannot start.
        """
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


class VerifierPool(WorkerPool):
    """Math-verify workers (``_mv_worker.py``); :meth:`equal` is safe to call from any thread."""

    def __init__(self, size: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__([sys.executable, str(_WORKER)], size or _default_size(), timeout, label="math-verify")

    def equal(self, gold: str, pred: str, timeout: float | None = None) -> bool | None:
        """math-verify equality of two answer strings; None when the call timed out or failed."""
        timeout = self.timeout if timeout is None else timeout
        request = {"g": gold, "p": pred, "t": max(0.05, 0.9 * timeout)}  # inner timer fires first
        try:
            reply = self.call(request, timeout)
        except WorkerDied:
            return None
        if reply is not None and (reply.get("timeout") or reply.get("error")):
            with self._cond:
                self.stats.timeouts += bool(reply.get("timeout"))
                self.stats.errors += bool(reply.get("error"))
        if reply is None or reply.get("timeout"):
            _THREAD.timeouts = verifier_timeouts_in_thread() + 1
            return None
        return bool(reply.get("r"))


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
