"""A small, safe numeric evaluator for LaTeX answers (no ``eval``, no sympy).

MATH-V's official ``is_equal`` turns both answers into numbers (``latex2sympy`` then Python ``eval``)
and compares them rounded to 2 decimals; an answer with a free symbol raises and counts as unequal.
This evaluator computes the same value for the numeric subset of LaTeX that answers use: decimals,
``+ - * / ^``, ``\\times``, ``\\cdot``, ``\\div``, ``\\frac{}{}`` (and ``dfrac``/``tfrac``), ``\\sqrt{}``,
``\\sqrt[n]{}``, ``\\pi``/``π``, ``e``-free constants, parentheses/braces, implicit products (``2\\pi``,
``3\\sqrt{2}``) and ``\\sin \\cos \\tan \\ln \\log``. Anything else (letters, symbols, sets) is not a
number: ``latex_number`` returns None. Input length and exponents are bounded, so it always returns fast.

Thousands separators: latex2sympy's number token accepts comma groups (``1,680`` is 1680), so the official
code counts ``1,680`` equal to ``1680``. Here a comma is a thousands separator only when the whole
answer is one number in the strict grouped form ``d{1,3}(,ddd)+`` (optionally signed, optionally with a
decimal part), see :func:`ungroup_thousands`; every other comma (``1,5``, ``1,2,3``, ``(1,680)``) keeps
the text from being a number.

    >>> latex_number("2\\\\pi") == latex_number("$2 \\\\pi$")
    True
    >>> latex_number("\\\\frac{\\\\sqrt{3}}{2}")
    0.8660254037844386
    >>> latex_number("x+1") is None
    True
"""

from __future__ import annotations

import math
import re
from typing import Optional, Union

Number = Union[int, float]
MAX_CHARS = 200
_MAX_EXPONENT = 1000
_TOKEN = re.compile(r"\s*(\d+\.?\d*|\.\d+|\\[a-zA-Z]+|π|[-+*/^(){}\[\]!])")
_DROP = ("\\left", "\\right", "\\displaystyle", "\\,", "\\!", "\\;", "$")
_FUNCS = {"\\sin": math.sin, "\\cos": math.cos, "\\tan": math.tan, "\\ln": math.log, "\\log": math.log10,
          "\\exp": math.exp}
_FRACS = ("\\frac", "\\dfrac", "\\tfrac")
# Linear-time: each repetition starts at a comma and has a fixed width, so backtracking is bounded.
_GROUPED = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?", re.ASCII)


class _NotNumber(Exception):
    pass


def ungroup_thousands(text: str) -> str:
    """``text`` without thousands separators when all of it (spaces around aside) is one number in the
    strict form ``d{1,3}(,ddd)+`` with an optional sign and decimal part; otherwise ``text`` unchanged.

    A comma elsewhere may be a decimal comma or separate list, tuple or interval items, so those stay:

    >>> ungroup_thousands("1,680"), ungroup_thousands("-1,234,567.5")
    ('1680', '-1234567.5')
    >>> ungroup_thousands("1,5"), ungroup_thousands("1,2,3"), ungroup_thousands("(1,680)")
    ('1,5', '1,2,3', '(1,680)')
    """
    stripped = text.strip()
    return stripped.replace(",", "") if _GROUPED.fullmatch(stripped) else text


def _tokens(text: str) -> list[str]:
    for junk in _DROP:
        text = text.replace(junk, "")
    tokens, pos = [], 0
    text = ungroup_thousands(text.strip())
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise _NotNumber
        tokens.append(m.group(1))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return tokens


class _Parser:
    """Recursive descent: sum := product (('+'|'-') product)*; product := power ((op|implicit) power)*;
    power := unary ('^' power)?; unary := '-' unary | atom."""

    def __init__(self, tokens: list[str]):
        self.tokens, self.i = tokens, 0

    def peek(self) -> Optional[str]:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: Optional[str] = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise _NotNumber
        self.i += 1
        return tok

    def parse(self) -> Number:
        value = self.sum()
        if self.peek() is not None:
            raise _NotNumber
        return value

    def sum(self) -> Number:
        value = self.product()
        while self.peek() in ("+", "-"):
            op = self.take()
            right = self.product()
            value = value + right if op == "+" else value - right
        return value

    def product(self) -> Number:
        value = self.power()
        while True:
            tok = self.peek()
            if tok in ("*", "\\times", "\\cdot"):
                self.take()
                value = value * self.power()
            elif tok in ("/", "\\div"):
                self.take()
                divisor = self.power()
                if divisor == 0:
                    raise _NotNumber
                value = value / divisor
            elif tok is not None and self._starts_atom(tok):
                value = value * self.power()  # implicit product: 2\pi, 3\sqrt{2}, 2(3)
            else:
                return value

    @staticmethod
    def _starts_atom(tok: str) -> bool:
        return tok[0].isdigit() or tok in ("(", "{", "\\pi", "π", "\\sqrt", *_FRACS, *_FUNCS) or tok.startswith(".")

    def power(self) -> Number:
        base = self.unary()
        if self.peek() == "^":
            self.take()
            exponent = self.power()
            if abs(exponent) > _MAX_EXPONENT or (base == 0 and exponent < 0):
                raise _NotNumber
            result = base ** exponent
            if isinstance(result, complex) or (isinstance(result, float) and not math.isfinite(result)):
                raise _NotNumber
            return result
        return base

    def unary(self) -> Number:
        if self.peek() == "-":
            self.take()
            return -self.unary()
        if self.peek() == "+":
            self.take()
            return self.unary()
        return self.atom()

    def group(self) -> Number:
        self.take("{")
        value = self.sum()
        self.take("}")
        return value

    def atom(self) -> Number:
        tok = self.take()
        if tok[0].isdigit() or tok.startswith("."):
            return int(tok) if tok.isdigit() else float(tok)
        if tok in ("\\pi", "π"):
            return math.pi
        if tok in ("(", "{", "["):
            close = {"(": ")", "{": "}", "[": "]"}[tok]
            value = self.sum()
            self.take(close)
            return value
        if tok in _FRACS:
            num = self.group()
            den = self.group()
            if den == 0:
                raise _NotNumber
            return num / den
        if tok == "\\sqrt":
            index: Number = 2
            if self.peek() == "[":
                self.take("[")
                index = self.sum()
                self.take("]")
            radicand = self.group() if self.peek() == "{" else self.atom()
            if radicand < 0 or index == 0:
                raise _NotNumber
            return radicand ** (1 / index)
        if tok in _FUNCS:
            arg = self.group() if self.peek() == "{" else self.power()
            try:
                return _FUNCS[tok](arg)
            except (ValueError, OverflowError):
                raise _NotNumber from None
        raise _NotNumber


def latex_number(text: str) -> Optional[Number]:
    """The value of a numeric LaTeX expression (int when it is an exact integer literal result), else None.

    A whole answer in the strict thousands form reads as its number; other commas are no number.

    >>> latex_number("1,680"), latex_number("1,5"), latex_number("(1,680)")
    (1680, None, None)
    """
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_CHARS:
        return None
    try:
        value = _Parser(_tokens(text)).parse()
    except (_NotNumber, OverflowError, ZeroDivisionError, RecursionError):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
