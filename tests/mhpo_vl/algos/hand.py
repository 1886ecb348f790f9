"""Scalar, pure-Python reference formulas (DESIGN.md section 1 and the baselines table) for the tests.

Nothing here uses torch: each loss is written token by token with ``math``, so the tests compare
the vectorised library against an independent implementation. Masked tokens are ``None``.
"""

from __future__ import annotations

import math

NAN, INF = float("nan"), float("inf")
# A 2x3 batch: row 0 has three valid tokens, row 1 two (its last column holds garbage).
LOGP = [[-1.0, -0.5, -2.0], [-0.3, -1.2, NAN]]
OLD = [[-1.1, -0.2, -2.0], [-0.8, -1.0, INF]]
MASK = [[True, True, True], [True, True, False]]
ADV = [1.0, -0.5]


def softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def log_ratios() -> list[list[float | None]]:
    return [[n - o if m else None for n, o, m in zip(*row)] for row in zip(LOGP, OLD, MASK)]


def mhpo_token(x: float, a: float, c=1.5, k_pos=1.5, lam_pos=1.0, k_neg=2.0, lam_neg=0.8,
               lfm=True, dhp=True, normalize=False) -> float:
    psi = c * math.tanh(x / c) if lfm else x
    zeta = 0.0
    if dhp:
        zeta = (softplus(psi) / lam_pos) ** k_pos + (softplus(-psi) / lam_neg) ** k_neg
        if normalize:
            zeta -= (math.log(2) / lam_pos) ** k_pos + (math.log(2) / lam_neg) ** k_neg
    return -math.exp(psi - zeta) * a


def ppo_token(r: float, a: float, eps_low: float, eps_high: float) -> float:
    return max(-a * r, -a * min(max(r, 1 - eps_low), 1 + eps_high))


def sapo_token(x: float, a: float, tau_pos=1.0, tau_neg=1.05) -> float:
    tau = tau_pos if a > 0 else tau_neg
    return -sigmoid(tau * (math.exp(x) - 1)) * 4 / tau * a


def per_token(fn) -> list[list[float | None]]:
    """fn(x, logp, a) on every valid token; None on masked ones."""
    out = []
    for xs, lps, a in zip(log_ratios(), LOGP, ADV):
        out.append([None if x is None else fn(x, lp, a) for x, lp in zip(xs, lps)])
    return out


def per_sequence(fn) -> list[list[float | None]]:
    """fn(valid log-ratios of the row, a) -> the row's value, put on each of its valid tokens."""
    out = []
    for xs, a in zip(log_ratios(), ADV):
        valid = [x for x in xs if x is not None]
        value = fn(valid, a)
        out.append([None if x is None else value for x in xs])
    return out


def gmpo_row(xs: list[float], a: float, eps=0.4) -> float:
    s = math.copysign(1.0, a) if a else 0.0
    clipped = [s * min(s * x, s * min(max(x, -eps), eps)) for x in xs]
    return -a * math.exp(sum(clipped) / len(xs))


def aggregate(values: list[list[float | None]], mode: str, max_len: int = 3) -> float:
    rows = [[v for v in row if v is not None] for row in values]
    if mode == "token-mean":
        return sum(map(sum, rows)) / max(1, sum(map(len, rows)))
    if mode == "seq-mean-token-mean":
        return sum(sum(r) / max(1, len(r)) for r in rows) / len(rows)
    if mode == "seq-mean-token-sum":
        return sum(map(sum, rows)) / len(rows)
    if mode == "seq-mean-token-sum-norm":
        return sum(map(sum, rows)) / len(rows) / max_len
    raise ValueError(mode)


def expected(name: str, agg: str) -> float:
    """The 2x3 batch's loss for policy loss ``name`` (default hyperparameters) under ``agg``."""
    tokens = {
        "mhpo": per_token(lambda x, lp, a: mhpo_token(x, a)),
        "grpo": per_token(lambda x, lp, a: ppo_token(math.exp(x), a, 0.2, 0.2)),
        "dr_grpo": per_token(lambda x, lp, a: ppo_token(math.exp(x), a, 0.2, 0.2)),
        "dapo": per_token(lambda x, lp, a: ppo_token(math.exp(x), a, 0.2, 0.28)),
        "sapo": per_token(lambda x, lp, a: sapo_token(x, a)),
        "cispo": per_token(lambda x, lp, a: -min(math.exp(x), 6.0) * a * lp),
        "gspo": per_sequence(lambda xs, a: ppo_token(math.exp(sum(xs) / len(xs)), a, 3e-4, 4e-4)),
        "gmpo": per_sequence(gmpo_row),
    }[name]
    return aggregate(tokens, agg)
