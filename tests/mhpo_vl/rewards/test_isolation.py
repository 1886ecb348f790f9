"""User reward functions that hang, raise, return junk, crash, or batch: bounded, scored on_error, counted."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from mhpo_vl.errors import ConfigError, UserError
from mhpo_vl.rewards import combine
from mhpo_vl.rewards.isolation import ThreadRunner

#: Only a hang guard: a failing call costs its 1 s limit; this allows a heavily loaded machine.
HANG_GUARD_S = 90.0

USER_CODE = '''
import math, os, time
from mhpo_vl.rewards import reward_fn

def sleeps_forever(completion, reference):
    if completion == "hang":
        while True:
            time.sleep(3600)
    return 1.0

def raises(completion, reference):
    raise KeyError("no such thing")

def junk(completion, reference, **fields):
    return {"nan": math.nan, "none": None, "inf": math.inf, "text": "1.0"}.get(completion, 0.5)

def crashes(completion, reference):
    if completion == "crash":
        os._exit(3)
    return 1.0

def count_calls(completion, reference):
    return float(os.getpid())

@reward_fn(batched=True)
def batched_len(completions, references, answer_type, **fields):
    assert isinstance(completions, list) and isinstance(answer_type, list)
    return [len(c) + (answer_type[i] == "math") for i, c in enumerate(completions)]

def plain_batched(completions, references, **fields):
    return [float(c == r) for c, r in zip(completions, references)]

@reward_fn(batched=True)
def wrong_length(completions, references):
    return [1.0]

@reward_fn(batched=True)
def one_bad(completions, references):
    return [1.0, float("nan"), 2.0]

@reward_fn(batched=True)
def batched_hang(completions, references):
    time.sleep(3600)

def bad_warm_up():
    raise RuntimeError("judge model missing")

@reward_fn(warm_up=bad_warm_up)
def needs_model(completion, reference):
    return 1.0

def warm_flag_init(flag_file):
    open(flag_file, "w").write(str(os.getpid()))

@reward_fn(warm_up=warm_flag_init)
def warmed(completion, reference, flag_file):
    return float(open(flag_file).read() == str(os.getpid()))
'''


@pytest.fixture(scope="module")
def user_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user_rewards") / "user_rewards.py"
    path.write_text(USER_CODE)
    return path


def _within(seconds: float, fn):
    """fn() run on a thread; fails (instead of hanging the suite) if it does not return in ``seconds``."""
    out: dict = {}
    thread = threading.Thread(target=lambda: out.setdefault("value", fn()), daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return out["value"], time.monotonic() - start


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_sleeps_forever_scores_on_error_and_counts_a_timeout(user_file, isolation, caplog):
    name = f"{user_file}:sleeps_forever"
    reward = combine({name: 1.0, "format_reward": 0.5}, timeouts={name: 1.0}, isolation={name: isolation},
                     on_error={name: -1.0})
    reward.warm_up()
    records = [{"id": "r0"}, {"id": "r0"}, {"id": "r1"}]
    with caplog.at_level(logging.WARNING, logger="mhpo_vl.rewards"):
        scores, seconds = _within(HANG_GUARD_S, lambda: reward(["hang", "hang", "fine"], ["", "", ""], records))
    assert scores.components[name] == [-1.0, -1.0, 1.0]
    assert scores.total == [-1.0, -1.0, 1.0]
    assert scores.timeouts_by == {name: 2, "format_reward": 0}
    assert scores.errors_by == {name: 0, "format_reward": 0}
    assert scores.failed == 2
    warnings = [r.getMessage() for r in caplog.records if "timed out" in r.getMessage()]
    assert len(warnings) == 1 and "'r0'" in warnings[0], "logged once per record id"
    again = reward(["fine"], [""], [{"id": "r2"}])  # a killed worker was replaced / a thread added
    assert again.components[name] == [1.0] and again.failed == 0
    reward.close()


def test_raising_function_scores_on_error_with_the_first_error_line(user_file, caplog):
    name = f"{user_file}:raises"
    reward = combine({name: 1.0}, on_error=0.25)
    with caplog.at_level(logging.WARNING, logger="mhpo_vl.rewards"):
        scores = reward(["a", "b"], ["", ""], [{"id": "x"}, {"id": "y"}])
    assert scores.total == [0.25, 0.25] and scores.errors_by == {name: 2} and scores.timeouts_by == {name: 0}
    messages = [r.getMessage() for r in caplog.records]
    assert any("record 'x'" in m and "KeyError" in m and "no such thing" in m for m in messages)
    reward.close()


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_nan_none_inf_and_strings_are_errors(user_file, isolation):
    name = f"{user_file}:junk"
    reward = combine({name: 1.0}, isolation=isolation, on_error=-2.0)
    scores = reward(["nan", "none", "inf", "text", "ok"], [""] * 5)
    assert scores.components[name] == [-2.0, -2.0, -2.0, -2.0, 0.5]
    assert scores.errors_by == {name: 4} and scores.failed == 4
    reward.close()


def test_a_crashing_worker_is_an_error_and_is_replaced(user_file):
    name = f"{user_file}:crashes"
    reward = combine({name: 1.0})
    scores, _ = _within(HANG_GUARD_S, lambda: reward(["crash", "fine"], ["", ""]))
    assert scores.components[name] == [0.0, 1.0]
    assert scores.errors_by == {name: 1} and scores.timeouts_by == {name: 0}
    assert reward(["fine"], [""]).components[name] == [1.0]
    reward.close()


def test_user_code_runs_in_worker_processes_by_default(user_file):
    import os

    name = f"{user_file}:count_calls"
    reward = combine({name: 1.0})
    pids = set(reward(["a"] * 8, [""] * 8).components[name])
    assert os.getpid() not in pids
    threaded = combine({name: 1.0}, isolation="thread")
    assert set(threaded(["a"], [""]).components[name]) == {float(os.getpid())}
    reward.close()


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_batched_function_gets_lists_once_per_batch(user_file, isolation):
    name = f"{user_file}:batched_len"
    reward = combine({name: 1.0, "format_reward": 0.0}, isolation={name: isolation})
    records = [{"answer_type": "math"}, {"answer_type": "text"}, {"answer_type": "math"}]
    scores = reward(["a", "bb", "ccc"], ["", "", ""], records)
    assert scores.components[name] == [2.0, 2.0, 4.0]
    assert scores.failed == 0
    reward.close()


def test_recipe_flag_declares_a_batched_function(user_file):
    name = f"{user_file}:plain_batched"
    reward = combine({name: 1.0}, batched=[name])
    assert reward(["1", "2"], ["1", "3"]).components[name] == [1.0, 0.0]
    reward.close()


def test_batched_bad_results(user_file):
    wrong, one_bad = f"{user_file}:wrong_length", f"{user_file}:one_bad"
    reward = combine({wrong: 1.0, one_bad: 1.0}, on_error=-1.0)
    scores = reward(["a", "b", "c"], ["", "", ""])
    assert scores.components[wrong] == [-1.0, -1.0, -1.0]
    assert scores.components[one_bad] == [1.0, -1.0, 2.0]
    assert scores.errors_by == {wrong: 3, one_bad: 1}
    reward.close()


def test_batched_timeout_scores_every_sample_on_error(user_file):
    name = f"{user_file}:batched_hang"
    reward = combine({name: 1.0}, timeouts={name: 1.0})
    scores, _ = _within(HANG_GUARD_S, lambda: reward(["a", "b"], ["", ""]))
    assert scores.components[name] == [0.0, 0.0] and scores.timeouts_by == {name: 2}
    reward.close()


def test_warm_up_runs_declared_hooks_in_the_workers(user_file, tmp_path):
    name = f"{user_file}:warmed"
    flag = str(tmp_path / "flag")
    reward = combine({name: 1.0}, {name: {"flag_file": flag}}, workers=1)
    reward.warm_up()
    assert Path(flag).read_text().isdigit()
    assert reward(["a"], [""]).components[name] == [1.0]  # scored in the worker that ran the warm-up
    reward.close()


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_failing_warm_up_is_a_one_line_user_error(user_file, isolation):
    name = f"{user_file}:needs_model"
    reward = combine({name: 1.0}, isolation=isolation)
    with pytest.raises(UserError, match="judge model missing"):
        reward.warm_up()
    reward.close()


@pytest.mark.parametrize(
    ("limits", "match"),
    [
        ({"timeouts": {"format_rewrd": 1.0}}, "did you mean 'format_reward'"),
        ({"timeouts": {"format_reward": 0}}, "reward.timeouts.format_reward"),
        ({"isolation": "fork"}, "reward.isolation.format_reward"),
        ({"on_error": {"format_reward": float("nan")}}, "reward.on_error.format_reward"),
        ({"batched": ["accuracy"]}, "not a component"),
    ],
)
def test_limit_settings_are_checked(limits, match):
    with pytest.raises(ConfigError, match=match):
        combine({"format_reward": 1.0}, **limits)


def test_thread_runner_replaces_a_stuck_thread():
    runner = ThreadRunner(1)
    release = threading.Event()
    results, _ = _within(HANG_GUARD_S, lambda: runner.run([(release.wait, 0.2), (lambda: 7, 5.0)]))
    assert results == [None, 7] and runner.abandoned == 1
    release.set()
    assert runner.run([(lambda: 8, 5.0)]) == [8]
    assert runner._threads == 1  # the stuck thread left the count when it was replaced


def test_idle_runner_threads_end_and_restart():
    runner = ThreadRunner(2)
    runner.idle_s = 0.05
    assert runner.run([(lambda: 1, 5.0)]) == [1]
    deadline = time.monotonic() + HANG_GUARD_S
    while runner._threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner._threads == 0
    assert runner.run([(lambda: 2, 5.0), (lambda: 3, 5.0)]) == [2, 3]
