"""Micro-benchmark: forward + backward time of every policy loss (default B=64, T=2048, float32, CPU).

Prints one row per loss (median over repeats, after a warm-up) and MHPO's time as a ratio to
GRPO's. Not a test: ``python scripts/bench_loss.py [--batch 64 --length 2048 --repeats 7]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mhpo_vl.algos import POLICY_LOSSES


def make_inputs(batch: int, length: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Realistic-looking inputs: log-probs in (-5, 0), log-ratios ~ N(0, 0.1), ragged lengths."""
    gen = torch.Generator().manual_seed(seed)
    old = -5 * torch.rand(batch, length, generator=gen)
    logp = old + 0.1 * torch.randn(batch, length, generator=gen)
    lengths = torch.randint(length // 8, length + 1, (batch,), generator=gen)
    mask = torch.arange(length)[None, :] < lengths[:, None]
    adv = torch.randn(batch, generator=gen)
    return logp, old, adv, mask


def time_loss(name: str, inputs: tuple[torch.Tensor, ...], repeats: int) -> float:
    """Median seconds of one forward + backward of loss ``name`` (one warm-up call first)."""
    logp, old, adv, mask = inputs
    fn = POLICY_LOSSES[name]
    times = []
    for i in range(repeats + 1):
        leaf = logp.detach().requires_grad_()
        start = time.perf_counter()
        loss, metrics = fn(leaf, old, adv, mask)
        loss.backward()
        elapsed = time.perf_counter() - start
        if i:
            times.append(elapsed)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    inputs = make_inputs(args.batch, args.length)
    print(f"policy-loss forward+backward, B={args.batch} T={args.length} float32, "
          f"{torch.get_num_threads()} CPU threads, median of {args.repeats}")
    results = {name: time_loss(name, inputs, args.repeats) for name in POLICY_LOSSES}
    print(f"| {'loss':<8} | {'ms':>8} | {'x grpo':>6} |\n|----------|----------|--------|")
    for name, seconds in results.items():
        print(f"| {name:<8} | {seconds * 1e3:8.2f} | {seconds / results['grpo']:6.2f} |")
    print(f"MHPO / GRPO time ratio: {results['mhpo'] / results['grpo']:.2f}")


if __name__ == "__main__":
    main()
