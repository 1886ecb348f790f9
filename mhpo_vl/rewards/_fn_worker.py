"""Worker process for one reward function: ``python -m mhpo_vl.rewards._fn_worker '<json>'``.

The argument is ``{"name": reward name or "file.py:fn", "base_dir": str | null, "options": {...}}``.
The worker resolves the function, runs its declared warm-up, prints ``{"ready": true}`` (or
``{"ready": false, "error": "..."}``), then answers one JSON request line at a time:

    request  {"c": completion(s), "r": reference(s), "k": keyword arguments, "b": batched, "n": count}
    reply    {"v": [score or null, ...], "e": {"index": "error line"}, "t": verifier timeouts}  or
             {"x": "error line"}

``t``: math-verify comparisons made by the call (e.g. the built-in accuracy) that timed out.

Scores are validated here with the same rules as in the trainer (:mod:`.userfn`). The user's prints
go to stderr; stdout carries only the protocol. Exits on EOF (the parent closed the pipe or died);
the parent kills the process group when a call overruns its time limit.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Any

from mhpo_vl.rewards.pool import verifier_timeouts_in_thread
from mhpo_vl.rewards.registry import resolve_reward
from mhpo_vl.rewards.userfn import first_line, run_warm_up, to_scores


def _watch_parent(parent: int) -> None:
    """Exit if the parent dies while this process is busy (EOF on stdin covers the idle case)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def answer(fn: Any, request: dict) -> dict:
    """Call ``fn`` on one request and encode its scores (or the exception's first line)."""
    n = int(request.get("n", 1))
    before = verifier_timeouts_in_thread()
    try:
        value = fn(request["c"], request["r"], **request.get("k", {}))
        scores = to_scores(value, bool(request.get("b")), n)
    except Exception as exc:  # the user's code: report, keep serving
        return {"x": first_line(exc)}
    return {
        "v": [s if isinstance(s, float) else None for s in scores],
        "e": {str(i): first_line(s) for i, s in enumerate(scores) if not isinstance(s, float)},
        "t": verifier_timeouts_in_thread() - before,
    }


def main() -> None:
    config = json.loads(sys.argv[1])
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # print() in user code goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops us
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    try:
        fn = resolve_reward(config["name"], config.get("base_dir"))
        run_warm_up(fn, config.get("options") or {})
    except Exception as exc:
        protocol.write(json.dumps({"ready": False, "error": first_line(exc)}) + "\n")
        protocol.flush()
        return
    protocol.write('{"ready": true}\n')
    protocol.flush()
    for line in sys.stdin:  # one request at a time; the parent waits for each reply
        protocol.write(json.dumps(answer(fn, json.loads(line))) + "\n")
        protocol.flush()


if __name__ == "__main__":
    main()
