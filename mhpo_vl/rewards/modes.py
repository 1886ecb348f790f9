"""Extraction modes: how a verifier finds the final answer in a completion (``reward.extract``).

Models trained to write ``<answer>`` tags use ``tags`` (the default); small instruct models that were
never taught a format often answer in prose ("The answer is 7."), for which ``last_number`` works.

| mode          | the answer is                                                                   |
|---------------|---------------------------------------------------------------------------------|
| ``tags``      | the last ``<answer>...</answer>``, else the last ``\\boxed{}``, else a short bare completion |
| ``boxed``     | the last ``\\boxed{...}`` only                                                   |
| ``last_number`` | the last number in the text (``-3``, ``1,234``, ``2.5``, ``3/4``), commas removed |
| ``full_text`` | the whole completion, stripped                                                  |

Every mode is linear in the completion's length; a missing answer is ``None`` (scored 0 and counted
as an extraction failure).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .extract import answer_text, last_boxed

__all__ = ["EXTRACT_MODES", "extract_final", "extraction_failures", "check_mode", "last_number"]

EXTRACT_MODES = ("tags", "boxed", "last_number", "full_text")

# A signed integer or decimal with optional thousands separators, optionally a fraction a/b.
_NUMBER = re.compile(r"(?<![\w.])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?(?![\w])",
                     re.ASCII)


def last_number(text: str) -> str | None:
    """The last number in ``text`` (thousands commas and spaces removed), or None.

    >>> last_number("3 + 4 = 7.")
    '7'
    >>> last_number("The total is -1,234.5 dollars")
    '-1234.5'
    >>> last_number("half: 1 / 2") , last_number("no digits") is None
    ('1/2', True)
    """
    last = None
    for match in _NUMBER.finditer(text):
        last = match
    if last is None:
        return None
    return last.group().replace(",", "").replace(" ", "").replace("−", "-").lstrip("+")


def check_mode(mode: str) -> str:
    """``mode`` if it is a known extraction mode, else a ValueError listing them."""
    if mode not in EXTRACT_MODES:
        raise ValueError(f"unknown extraction mode {mode!r}; expected one of {', '.join(EXTRACT_MODES)}")
    return mode


def extract_final(completion: str, mode: str = "tags", *, answer_tag: str = "answer") -> str | None:
    """The final answer of ``completion`` under extraction ``mode`` (see the module table), or None.

    >>> extract_final("<answer>4</answer>"), extract_final("so it is 4.", "last_number")
    ('4', '4')
    >>> extract_final(r"\\boxed{x} 5", "boxed"), extract_final("  Paris ", "full_text")
    ('x', 'Paris')
    """
    if not isinstance(completion, str):
        return None
    if mode == "tags":
        return answer_text(completion, answer_tag=answer_tag)
    if mode == "boxed":
        return last_boxed(completion)
    if mode == "last_number":
        return last_number(completion)
    if mode == "full_text":
        return completion.strip() or None
    raise ValueError(check_mode(mode))


def extraction_failures(completions: Sequence[str], mode: str = "tags") -> float:
    """Fraction of ``completions`` in which ``mode`` finds no answer (0.0 for none).

    >>> extraction_failures(["it is 3", "no idea"], "last_number")
    0.5
    """
    if not completions:
        return 0.0
    return sum(extract_final(c, mode) is None for c in completions) / len(completions)
