"""``math_accuracy``: mathematical equality of the final answer and the reference, via math-verify."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from .guards import MAX_ANSWER_CHARS, refusal_reason
from .modes import extract_final
from .pool import WorkerStartError, get_pool

__all__ = ["math_accuracy", "math_equal"]

_SPACES = re.compile(r"\s+")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+|/[1-9]\d*)?", re.ASCII)
#: A reference this long is refused too (data bug, or a huge expression no answer should match).
MAX_REFERENCE_CHARS = 10 * MAX_ANSWER_CHARS


def _squash(text: str) -> str:
    return _SPACES.sub("", text)


def math_equal(answer: str, reference: str, *, timeout: float | None = None) -> bool:
    """True when math-verify finds ``answer`` equal to ``reference`` (both plain or LaTeX strings).

    Each string is parsed as LaTeX math (wrapped in ``$...$`` unless it already has delimiters or a
    ``\\boxed{}``), then compared with ``math_verify.verify(gold, pred)`` in a worker process under
    a hard ``timeout`` (default 1 s). Refused inputs (see :mod:`.guards`) and timeouts are False.
    Identical strings (ignoring whitespace) and exactly equal plain numbers (``1/2`` and ``0.50``)
    are equal without a round-trip to a worker.
    """
    a, r = _squash(answer), _squash(reference)
    if a == r:
        return True
    if refusal_reason(answer) is not None or len(reference) > MAX_REFERENCE_CHARS:
        return False
    if _PLAIN_NUMBER.fullmatch(a) and _PLAIN_NUMBER.fullmatch(r):
        if Fraction(a) == Fraction(r):  # exactly equal plain numbers: math-verify agrees, skip the pool
            return True
    try:
        return bool(get_pool().equal(reference, answer, timeout=timeout))
    except WorkerStartError:
        raise  # a broken installation must fail loudly, not score every answer 0
    except RuntimeError:  # the pool is shutting down, or every worker stayed busy far too long
        return False


def math_accuracy(
    completion: str,
    reference: Any,
    *,
    answer_tag: str = "answer",
    extract: str = "tags",
    timeout: float | None = None,
    **_record: Any,
) -> float:
    """1.0 when the completion's final answer is mathematically equal to the reference, else 0.0.

    The answer is :func:`~mhpo_vl.rewards.extract.answer_text` (last ``<answer>``, else last
    ``\\boxed{}``, else a short bare completion). Equality is math-verify's (never looser): fractions
    vs decimals, radicals, sets, intervals, tuples, ``x = 3`` vs ``3``, degrees and units. Extra
    keyword arguments (record fields such as ``answer_type``) are ignored.

    >>> math_accuracy("<think>...</think><answer>\\\\frac{1}{2}</answer>", "0.5")
    1.0
    >>> math_accuracy("1/3", "0.333")
    0.0
    >>> math_accuracy(r"\\boxed{30^\\circ}", "30")
    1.0
    """
    answer = extract_final(completion, extract, answer_tag=answer_tag)
    if answer is None or reference is None or isinstance(reference, bool):
        return 0.0
    gold = str(reference).strip()
    if not gold:
        return 0.0
    return 1.0 if math_equal(answer, gold, timeout=timeout) else 0.0
