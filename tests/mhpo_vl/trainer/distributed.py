"""Run a function on 2 CPU ranks (gloo) in fresh processes, with a hang guard; for the sharding tests."""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import traceback
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(fn: Callable[..., None], rank: int, world: int, port: int, args: tuple[Any, ...], errors: Any,
           backend: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1"})
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        fn(rank, world, *args)
    except BaseException:  # noqa: BLE001 - reported to the parent
        errors.put(f"rank {rank}:\n{traceback.format_exc()}")
        raise
    finally:
        dist.destroy_process_group()


def run_ranks(fn: Callable[..., None], *args: Any, world: int = 2, timeout: float = 120.0,
              backend: str = "gloo") -> None:
    """Call ``fn(rank, world, *args)`` on ``world`` spawned ranks (process group ``backend``, e.g. "nccl" or
    "cpu:gloo,cuda:nccl" on a GPU machine); raise on error or after ``timeout`` s.

    ``fn`` must be importable (a module-level function). The timeout is a hang guard only.
    """
    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_entry, args=(fn, r, world, port, args, errors, backend)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    if hung:
        raise AssertionError(f"ranks {hung} still running after {timeout:.0f} s (hang)")
    messages = []
    while not errors.empty():
        messages.append(errors.get())
    bad = [r for r, p in enumerate(procs) if p.exitcode != 0]
    if bad or messages:
        raise AssertionError(f"ranks {bad} failed:\n" + "\n".join(messages))
