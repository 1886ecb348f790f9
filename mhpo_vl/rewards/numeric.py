"""``numeric_accuracy``: one number (separators, signs, scientific notation, percent) within rel_tol."""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

from .extract import unwrap
from .modes import extract_final

__all__ = ["numeric_accuracy", "parse_number", "Number"]

MAX_NUMBER_CHARS = 200
_MANTISSA = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+"
_NUMBER = re.compile(
    rf"(?P<m>{_MANTISSA})"
    r"(?:[eE](?P<e>[+-]?\d{1,4})|\s*(?:\\times|\\cdot|×|\*|x)\s*10\s*\^\s*\{?\s*(?P<p>[+-]?\d{1,4})\s*\}?)?",
    re.ASCII,
)
_FRACTION = re.compile(
    r"(?P<a>[+-]?\d+)\s*/\s*(?P<b>\d+)|(?P<s>[+-])?\\d?frac\s*\{\s*(?P<fa>\d+)\s*\}\s*\{\s*(?P<fb>\d+)\s*\}",
    re.ASCII,
)
_PERCENT = re.compile(r"\s*\\?%\s*$")
_PREFIX = re.compile(r"^(?:[A-Za-z]\w{0,15}\s*=\s*|\\\$\s*|[$€£¥]\s*)")
_UNIT = re.compile(
    r"\s*(?:\\text\{[^{}]{0,20}\}|\\mathrm\{[^{}]{0,20}\}|[A-Za-z]{1,12}(?:\^?[23])?|°|\^\s*\{?\\circ\}?)$"
)
_THIN = re.compile(r"\\[,!;: ]|\{,\}")


class Number(NamedTuple):
    """A parsed number and whether it was written as a percentage (value is then the percent figure)."""

    value: float
    percent: bool


def parse_number(text: Any) -> Number | None:
    """The single number ``text`` denotes, or None.

    >>> parse_number("1,234.5")
    Number(value=1234.5, percent=False)
    >>> parse_number(r"-1.2 \\times 10^{3}")
    Number(value=-1200.0, percent=False)
    >>> parse_number("45%")
    Number(value=45.0, percent=True)
    >>> parse_number("3 or 4") is None
    True
    """
    if isinstance(text, bool) or text is None:
        return None
    if isinstance(text, (int, float)):
        return Number(float(text), False) if math.isfinite(text) else None
    s = str(text)
    if len(s) > MAX_NUMBER_CHARS:
        return None
    s = unwrap(s)
    s = _THIN.sub(lambda m: "," if m.group() == "{,}" else "", s).replace("\u2212", "-").strip()
    s = s[:-1].rstrip() if s.endswith(".") else s  # a sentence's full stop: "5."
    percent = bool(_PERCENT.search(s))
    s = _PERCENT.sub("", s)
    s = _PREFIX.sub("", s, count=1).strip()
    value = _value(s)
    if value is None and not percent:
        value = _value(_UNIT.sub("", s, count=1).strip())
    return Number(value, percent) if value is not None else None


def _value(s: str) -> float | None:
    """The finite value of a bare number or simple fraction, else None."""
    m = _NUMBER.fullmatch(s)
    if m:
        exponent = int(m.group("e") or m.group("p") or 0)
        try:
            value = float(m.group("m").replace(",", "")) * 10.0**exponent
        except OverflowError:
            return None
    else:
        m = _FRACTION.fullmatch(s)
        if not m:
            return None
        if m.group("a"):
            num, den = int(m.group("a")), int(m.group("b"))
        else:
            num, den = int(m.group("fa")), int(m.group("fb"))
        if den == 0:
            return None
        value = (-1.0 if m.group("s") == "-" else 1.0) * num / den
    return value if math.isfinite(value) else None


def numeric_accuracy(
    completion: str,
    reference: Any,
    rel_tol: float = 1e-4,
    *,
    answer_tag: str = "answer",
    extract: str = "tags",
    **_record: Any,
) -> float:
    """1.0 when the answer is one number within ``rel_tol`` (relative) of the reference, else 0.0.

    Accepted: ``1,234``, ``+3``, ``-0.5``, ``.5``, ``1e3``, ``1.2 \\times 10^3``, ``3/4``,
    ``\\frac{3}{4}``, ``x = 3``, ``$5``, a trailing unit (``5 cm``, ``30°``). Anything with two
    numbers (``3 or 4``) or words around the number scores 0. Percentages: when the reference is a
    percentage (``45%``) the answers ``45%``, ``45`` and ``0.45`` all match; otherwise ``45%`` is
    read as 45. A reference of 0 needs an answer within 1e-12.

    >>> numeric_accuracy("<answer>1,234</answer>", "1234")
    1.0
    >>> numeric_accuracy("<answer>0.45</answer>", "45%")
    1.0
    >>> numeric_accuracy("<answer>3.1</answer>", "3.14")
    0.0
    """
    if rel_tol < 0:
        raise ValueError(f"numeric_accuracy: rel_tol must be >= 0, got {rel_tol}")
    answer = extract_final(completion, extract, answer_tag=answer_tag)
    got = parse_number(answer) if answer is not None else None
    gold = parse_number(reference)
    if got is None or gold is None:
        return 0.0
    candidates = [got.value]
    if gold.percent and not got.percent:
        candidates.append(got.value * 100.0)
    ok = any(math.isclose(value, gold.value, rel_tol=rel_tol, abs_tol=1e-12) for value in candidates)
    return 1.0 if ok else 0.0
