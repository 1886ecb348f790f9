"""Adversarial inputs under a time bound, thread and process pools, worker kills, clean exit."""

import multiprocessing as mp
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mhpo_vl.rewards import (
    choice_accuracy,
    combine,
    format_reward,
    iou_reward,
    math_accuracy,
    numeric_accuracy,
    pool_stats,
)
from mhpo_vl.rewards.pool import VerifierPool, _Worker

# A hang guard, not a speed check: the contract (~1 s per call, the pool's budget) is measured by
# `make bench-rewards`; a pass/fail on wall-clock time would depend on the machine's load.
HANG_GUARD_S = 15.0

ADVERSARIAL = [
    "9**9**9**9",
    "<answer>9**9**9**9</answer>",
    r"<answer>9^{9^{9^{9}}}</answer>",
    "<answer>(10!)!</answer>",
    "<answer>100000000!</answer>",
    r"<answer>\binom{10^9}{5 \cdot 10^8}</answer>",
    r"<answer>\sum_{k=1}^{9999} k^k</answer>",
    r"<answer>\int_0^1 x^{x} dx</answer>",
    "<answer>__import__('os').system('touch pwned')</answer>",
    "<answer>lambda: open('pwned', 'w')</answer>",
    "<answer>{{{{{{{{{{{{{{{{{{{{1}}}}}}}}}}}}}}}}}}}}</answer>",
    r"\boxed{" * 50_000,
    "<answer>" + "{" * 1_000_000 + "</answer>",
    "<answer>" + "1" * 1_000_000 + "</answer>",
    "x" * 1_000_000,
    "<answer>" * 50_000 + "</answer>" * 50_000,
    "<answer>\u0033\u0301</answer>",  # combining accent on a digit
    "<answer>\x00\x01\x02</answer>",
    "<answer>\ud800</answer>",  # lone surrogate
    "<answer>1</answer>" * 10_000,
]
VERIFIERS = [
    lambda c: math_accuracy(c, "1"),
    lambda c: choice_accuracy(c, "A", ["1", "2"]),
    lambda c: numeric_accuracy(c, "1"),
    lambda c: iou_reward(c, [0, 0, 1, 1]),
    format_reward,
]


@pytest.mark.parametrize("completion", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_adversarial_inputs_are_bounded_and_score_in_range(completion, tmp_path, monkeypatch,
                                                          production_verifier_budget):
    monkeypatch.chdir(tmp_path)
    for verify in VERIFIERS:
        start = time.perf_counter()
        score = verify(completion)
        assert time.perf_counter() - start < HANG_GUARD_S
        assert 0.0 <= score <= 1.0
    assert not (tmp_path / "pwned").exists()


def test_multiple_answers_only_the_last_counts():
    assert math_accuracy("<answer>1</answer>" * 10_000 + "<answer>2</answer>", "1") == 0.0
    assert math_accuracy("<answer>1</answer>" * 10_000, "1") == 1.0


CASES = [
    (math_accuracy, "<answer>1/2</answer>", "0.5", 1.0),
    (math_accuracy, "<answer>0.333</answer>", "1/3", 0.0),
    (math_accuracy, r"\boxed{30^\circ}", "30", 1.0),
    (math_accuracy, "<answer>9**9**9**9</answer>", "1", 0.0),
    (choice_accuracy, "<answer>(b)</answer>", "B", 1.0),
    (numeric_accuracy, "<answer>1,234</answer>", "1234", 1.0),
    (iou_reward, "<answer>[0,0,1,1]</answer>", [0, 0, 1, 1], 1.0),
] * 12


def _score(case):
    fn, completion, reference, _ = case
    start = time.perf_counter()
    return fn(completion, reference), time.perf_counter() - start


def test_many_threads_get_right_scores():
    with ThreadPoolExecutor(max_workers=8) as executor:
        results = list(executor.map(_score, CASES))
    assert [score for score, _ in results] == [case[3] for case in CASES]
    assert max(seconds for _, seconds in results) < HANG_GUARD_S  # includes cold worker start-up


def _score_in_child(case):
    fn, completion, reference, _ = case
    return fn(completion, reference)


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_process_pool_workers(method):
    if method not in mp.get_all_start_methods():
        pytest.skip(f"{method} unavailable")
    with mp.get_context(method).Pool(2) as pool:  # daemonic workers: our pool uses subprocess, not mp
        scores = pool.map(_score_in_child, CASES[:7])
    assert scores == [case[3] for case in CASES[:7]]


def test_stuck_worker_is_killed_and_replaced():
    pool = VerifierPool(size=1, timeout=0.5)
    try:
        worker = _Worker()
        # Ask with an inner timer longer than the outer deadline: the parent must give up on its own.
        reply = worker.ask({"g": "1", "p": r"\sum_{k=1}^{9999} k^k", "t": 30}, timeout=0.3)
        assert reply is None
        worker.stop(kill=True)
        assert worker.proc.poll() is not None
        before = time.perf_counter()
        assert pool.equal("1", r"\sum_{k=1}^{9999} k^k", timeout=0.3) is None  # inner timer path
        assert time.perf_counter() - before < HANG_GUARD_S
        assert pool.stats.timeouts == 1
        assert pool.equal("0.5", "1/2", timeout=10.0) is True  # the pool still works afterwards
    finally:
        pool.close()


def test_batch_of_512_reports_throughput_and_timeouts():
    reward = combine({"accuracy": 0.9, "format_reward": 0.1})
    base = [
        ("<think>t</think><answer>\\frac{1}{2}</answer>", "0.5", {"answer_type": "math"}),
        ("<think>t</think><answer>x = 3</answer>", "3", {"answer_type": "math"}),
        ("<answer>B</answer>", "B", {"answer_type": "choice"}),
        ("<think>t</think><answer>1,000</answer>", "1000", {"answer_type": "numeric"}),
    ]
    batch = [(c.replace("t</think>", f"t{i}</think>"), r, rec) for i in range(128) for c, r, rec in base]
    scores = reward(*map(list, zip(*batch)))
    assert len(scores.total) == 512
    assert scores.components["accuracy"] == [1.0] * 512
    assert scores.throughput > 0  # completions per second; the number itself is `make bench-rewards`'s
    assert scores.timeouts == 0
    assert pool_stats()["calls"] > 0


def test_interpreter_exit_is_clean_and_leaves_no_workers(tmp_path):
    code = (
        "from mhpo_vl.rewards import math_accuracy\n"
        "from mhpo_vl.rewards.pool import get_pool\n"
        "assert math_accuracy(r'\\frac{1}{2}', '0.5') == 1.0\n"
        "print(' '.join(str(w.proc.pid) for w in get_pool()._idle))\n"
    )
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert time.perf_counter() - start < 30
    pids = [int(p) for p in out.stdout.split()]
    assert pids
    deadline = time.time() + 5
    while time.time() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too; /proc tells them apart on Linux.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True
