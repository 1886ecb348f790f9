"""Throughput and latency of the verifier rewards: ``python scripts/bench_rewards.py [--n 512]``.

Scores a batch of mixed completions (math, choice, numeric, bbox; right, wrong and adversarial)
with ``combine`` and prints completions/s, timeouts and the slowest single calls from threads.
``--user`` instead measures what a user reward in worker processes costs outside the trainer: the
first call on a cold pool, the warm-up the trainer does before step 1, and a warm call.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mhpo_vl.rewards import combine, math_accuracy, pool_stats
from mhpo_vl.rewards.pool import get_pool

SAMPLES = [
    (r"<think>t</think><answer>\frac{{{i}}}{{{j}}}</answer>", "{i}/{j}", {"answer_type": "math"}),
    (r"<think>t</think><answer>x = {i}</answer>", "{i}", {"answer_type": "math"}),
    (r"<think>t</think><answer>{i}.5</answer>", "{j}/2", {"answer_type": "math"}),
    ("<think>t</think><answer>B</answer>", "B", {"answer_type": "choice", "choices": ["1", "2", "3"]}),
    ("<think>t</think><answer>{i},000</answer>", "{i}000", {"answer_type": "numeric"}),
    ("<think>t</think><answer>[0, 0, {j}, {j}]</answer>", "[0, 0, {i}, {i}]", {"answer_type": "bbox"}),
    ("<answer>9**9**9**{i}</answer>", "1", {"answer_type": "math"}),
]


def batch(n: int) -> tuple[list[str], list[str], list[dict]]:
    rows = [SAMPLES[k % len(SAMPLES)] for k in range(n)]
    fill = [dict(i=k + 1, j=k + 2) for k in range(n)]
    return (
        [c.format(**f) for (c, _, _), f in zip(rows, fill)],
        [r.format(**f) for (_, r, _), f in zip(rows, fill)],
        [dict(rec) for _, _, rec in rows],
    )


def user_reward_startup() -> dict:
    """Seconds for a trivial ``file.py:fn`` reward in process isolation: cold call, warm-up, warm call."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench_user_reward.py"
        path.write_text("def short(completion, reference):\n    return float(len(completion) < 10)\n")
        name = f"{path}:short"
        out = {}
        cold = combine({name: 1.0}, workers=1)
        start = time.perf_counter()
        cold(["a"], [""])
        out["first_call_cold_pool_s"] = time.perf_counter() - start
        cold.close()
        warm = combine({name: 1.0}, workers=4)
        start = time.perf_counter()
        for comp in warm.components:
            comp.pool.warm_up()
        out["warm_up_4_workers_s"] = time.perf_counter() - start
        start = time.perf_counter()
        warm(["a"], [""])
        out["first_call_after_warm_up_s"] = time.perf_counter() - start
        start = time.perf_counter()
        warm(["a"] * 64, [""] * 64)
        out["batch_of_64_s"] = time.perf_counter() - start
        warm.close()
    return {k: round(v, 3) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="completions per batch")
    parser.add_argument("--threads", type=int, default=8, help="threads for the single-call latency test")
    parser.add_argument("--user", action="store_true", help="measure a user reward's worker start-up instead")
    args = parser.parse_args()
    if args.user:
        print(json.dumps(user_reward_startup(), indent=2))
        return
    reward = combine({"accuracy": 0.9, "format_reward": 0.1})
    start = time.perf_counter()
    get_pool().warm_up()
    warm = time.perf_counter() - start
    cold = reward(*batch(args.n))
    hot = reward(*batch(args.n))  # workers' parse caches are warm now
    completions, references, records = batch(args.n)
    rows = zip(completions, references, records)
    math_rows = [(c, r) for c, r, rec in rows if rec["answer_type"] == "math"][:200]

    def timed(pair: tuple[str, str]) -> float:
        t = time.perf_counter()
        math_accuracy(*pair)
        return time.perf_counter() - t

    with ThreadPoolExecutor(args.threads) as executor:
        latencies = sorted(executor.map(timed, math_rows))
    print(
        json.dumps(
            {
                "n": args.n,
                "warm_up_s": round(warm, 3),
                "first_batch": {
                    "seconds": round(cold.seconds, 3),
                    "completions_per_s": round(cold.throughput, 1),
                    "timeouts": cold.timeouts,
                },
                "second_batch": {
                    "seconds": round(hot.seconds, 3),
                    "completions_per_s": round(hot.throughput, 1),
                    "timeouts": hot.timeouts,
                },
                "thread_call_latency_s": {
                    "p50": round(latencies[len(latencies) // 2], 4),
                    "max": round(latencies[-1], 4),
                },
                "pool": pool_stats(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
