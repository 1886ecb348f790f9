"""Cheap pre-checks that refuse math answers which would make sympy hang (before any parsing).

These are a first line of defence; the worker pool's hard timeout is the second. A refused answer
scores 0, which is never looser than math-verify.
"""

from __future__ import annotations

import math
import re

__all__ = ["MAX_ANSWER_CHARS", "refusal_reason"]

#: Longest math answer sent to the parser (a real final answer is far shorter).
MAX_ANSWER_CHARS = 1_000
MAX_NESTING = 8  # math-verify's LaTeX parse time grows steeply with bracket depth
MAX_OPEN_RUN = 3  # "((((" or "{{{{" is never a real answer and is slow to parse
MAX_BRACKETS = 120
MAX_DIGITS = 60
MAX_EXPONENT = 10_000
MAX_FACTORIAL = 1_000
MAX_HEAVY_ARGUMENT = 100  # largest integer allowed beside \sum, \prod, \int, \binom, \Gamma, ...
_POW = r"(?:\*\*|\^)"
# A power whose (numeric) exponent is itself a power: 9**9**9, 9^{9^{9}}, 2^{(10^{10})}.
_TOWER = re.compile(_POW + r"\s*[{(\s]*[-+]?[\d.\s]*" + r"[})\s]*" + _POW)
_BIG_EXPONENT = re.compile(_POW + r"\s*[{(\s]*\+?\s*(\d+)")
_FACTORIAL = re.compile(r"(\d*)\s*!")
_HEAVY = re.compile(
    r"\\(?:binom|dbinom|tbinom|choose|Gamma|sum|prod|int|lim)|\b(?:binom|gamma|factorial)\s*\("
)
_INTEGER = re.compile(r"\d+")
_NUMERIC_POWER = re.compile(r"(\d+)\s*" + _POW + r"\s*\{?\s*(\d+)")
_DIGIT_RUN = re.compile(rf"\d{{{MAX_DIGITS + 1},}}")


def _bracket_shape(text: str) -> tuple[int, int, int]:
    """(deepest nesting, longest run of consecutive openers, bracket count); spaces don't break a run."""
    depth = deepest = run = longest = count = 0
    for ch in text:
        if ch in "{([":
            depth += 1
            run += 1
            count += 1
            deepest = max(deepest, depth)
            longest = max(longest, run)
        elif ch in "})]":
            depth = max(0, depth - 1)
            run = 0
            count += 1
        elif not ch.isspace():
            run = 0
    return deepest, longest, count


def _largest_number(text: str) -> float:
    """The largest integer literal or numeric power ``a^b`` in ``text`` (estimated, never computed)."""
    largest = max((int(m.group()) for m in _INTEGER.finditer(text)), default=0)
    for m in _NUMERIC_POWER.finditer(text):
        base, exponent = int(m.group(1)), int(m.group(2))
        if base > 1:
            largest = max(largest, 10.0 ** min(300.0, exponent * math.log10(base)))
    return largest


def refusal_reason(answer: str) -> str | None:
    """Why ``answer`` is refused before parsing, or None when it is safe to parse.

    >>> refusal_reason(r"\\frac{\\sqrt{3}}{2}") is None
    True
    >>> refusal_reason("9**9**9**9")
    'power tower'
    >>> refusal_reason("(10!)!")
    'factorial of an expression'
    """
    if len(answer) > MAX_ANSWER_CHARS:
        return "too long"
    if _DIGIT_RUN.search(answer):
        return "number too long"
    deepest, run, count = _bracket_shape(answer.replace("\\left", "").replace("\\right", ""))
    if deepest > MAX_NESTING or run > MAX_OPEN_RUN or count > MAX_BRACKETS:
        return "nested too deeply"
    if _TOWER.search(answer):
        return "power tower"
    if any(int(m.group(1)) > MAX_EXPONENT for m in _BIG_EXPONENT.finditer(answer)):
        return "exponent too large"
    for m in _FACTORIAL.finditer(answer):
        if answer.startswith("=", m.end()):  # "!=" is a comparison, not a factorial
            continue
        if m.group(1):
            if int(m.group(1)) > MAX_FACTORIAL:
                return "factorial too large"
        elif answer[: m.start()].rstrip()[-1:] in (")", "}", "]", "!"):
            return "factorial of an expression"
    if _HEAVY.search(answer) and _largest_number(answer) > MAX_HEAVY_ARGUMENT:
        return "large argument to a heavy operator"
    return None
