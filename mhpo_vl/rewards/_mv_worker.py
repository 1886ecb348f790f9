"""Math-verify worker process: reads JSON lines ``{"g": gold, "p": pred, "t": seconds}`` on stdin and
writes ``{"r": bool}`` (or ``{"r": false, "timeout": true}``) lines on stdout.

Run as a script by :mod:`mhpo_vl.rewards.pool` (never imported by the library). It uses only the
standard library and math-verify; math-verify's own signal timeouts are disabled and replaced by an
interval timer on this process's main thread, while the parent kills the process if even that fails
(a long C-level computation). Exits on EOF, i.e. when the parent closes the pipe or dies.
"""

import os
import sys

# Running as a script puts this file's folder first on sys.path; drop it so that sibling modules
# never shadow the standard library or math-verify's dependencies.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from functools import lru_cache  # noqa: E402

logging.disable(logging.CRITICAL)

from math_verify import parse, verify  # noqa: E402

# First calls on each answer shape pay sympy's lazy imports; do them while idle, one at a time.
_IDLE_WARM_UP = [
    ("x=3", "3"),
    ("[1,2)", "(1,2]"),
    ("\\{1,2\\}", "(1,2)"),
    ("\\sqrt{2}", "1.41"),
    ("[0,0,1,1]", "[0,0,2,2]"),
    ("30^\\circ", "30\\%"),
    ("x^2+1", "y"),
]
_LATEX_MARKERS = re.compile(r"(?<!\\)\$|\\\(|\\\[|\\boxed")


class _Timeout(BaseException):
    """Raised by the interval timer; BaseException so math-verify's ``except Exception`` can't eat it."""


def _on_alarm(signum, frame):
    raise _Timeout


def _as_latex(text: str) -> str:
    return text if _LATEX_MARKERS.search(text) else f"${text}$"


@lru_cache(maxsize=4096)
def _parse(text: str):
    return tuple(parse(_as_latex(text), parsing_timeout=None))


def _equal(gold: str, pred: str) -> bool:
    g, p = _parse(gold), _parse(pred)
    if not g or not p:
        return False
    return bool(verify(list(g), list(p), timeout_seconds=None))


def _watch_parent(parent: int) -> None:
    """Exit if the parent dies while this process is busy (EOF on stdin covers the idle case)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def main() -> None:
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops us
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    _equal("\\frac{1}{2}", "0.5")  # warm the parser's lazy imports before reporting ready
    out = sys.stdout
    out.write('{"ready": true}\n')
    out.flush()
    idle_work = list(_IDLE_WARM_UP)
    while True:
        if idle_work and not select.select([sys.stdin], [], [], 0)[0]:
            _answer({"g": idle_work[0][0], "p": idle_work.pop(0)[1], "t": 0.5})
            continue
        line = sys.stdin.readline()  # the parent sends one request at a time and waits for the reply
        if not line:
            return
        out.write(json.dumps(_answer(line)) + "\n")
        out.flush()


def _answer(request) -> dict:
    """Compare one request (a JSON line or a dict) under the interval timer."""
    try:
        req = json.loads(request) if isinstance(request, str) else request
        signal.setitimer(signal.ITIMER_REAL, float(req.get("t", 1.0)))
        try:
            return {"r": _equal(str(req["g"]), str(req["p"]))}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Timeout:
        return {"r": False, "timeout": True}
    except Exception as exc:  # a parser bug must not kill the worker
        return {"r": False, "error": type(exc).__name__}


if __name__ == "__main__":
    main()
