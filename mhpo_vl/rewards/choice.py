"""``choice_accuracy``: multiple choice by option letter or, when choices are given, option text."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

from .extract import unwrap
from .modes import extract_final

__all__ = ["choice_accuracy", "named_options", "option_letter"]

_LETTERS = string.ascii_uppercase
#: Longer answers are not read as a choice (a real one is a letter or an option's text).
MAX_CHOICE_CHARS = 2_000
# Only a letter: A, (A), A., A), A:, [A] and the same in lowercase.
_ONLY_LETTER = re.compile(r"[(\[]?([A-Za-z])[)\]]?[.:)]?")
# A letter label then text: "A. 30", "(B) 40", "c) 12", "D: none".
_LABELLED = re.compile(r"(?:[(\[]([A-Za-z])[)\]]|([A-Z])[.:)]|([a-z])\))\s*(.+)", re.S)
# A capital letter standing alone in prose: "the answer is B", "(C)".
_PROSE_LETTER = re.compile(r"(?<![A-Za-z0-9'’])([A-Z])(?![A-Za-z0-9'’])")
_SPACES = re.compile(r"\s+")
_TRAILING = re.compile(r"[\s.。]+$")


def _norm(text: str) -> str:
    """Case-folded, whitespace-collapsed, without trailing periods or outer wrappers."""
    return _TRAILING.sub("", _SPACES.sub(" ", unwrap(text)).casefold()).strip()


def _option_texts(choices: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """Letter -> normalised option text; a leading "A." style label on every option is dropped."""
    if not choices:
        return {}
    if isinstance(choices, Mapping):
        pairs = [(str(k).strip().upper(), str(v)) for k, v in choices.items()]
    else:
        pairs = list(zip(_LETTERS, (str(c) for c in choices)))
    out = {}
    for letter, text in pairs:
        m = _LABELLED.fullmatch(text.strip())
        label = m and (m.group(1) or m.group(2) or m.group(3) or "").upper()
        out[letter] = _norm(m.group(4) if m and label == letter else text)
    return out


def _letters_for_text(text: str, options: dict[str, str]) -> set[str]:
    key = _norm(text)
    return {letter for letter, option in options.items() if key and option == key}


def named_options(
    answer: str, choices: Sequence[str] | Mapping[str, str] | None = None, letters: str | None = None
) -> set[str]:
    """The set of option letters an answer names (more than one means the answer is ambiguous).

    Capital letters in prose count only when they are valid option letters: the choices' letters,
    else ``letters`` (default A-Z).

    >>> sorted(named_options("(b)"))
    ['B']
    >>> sorted(named_options("A or C"))
    ['A', 'C']
    >>> sorted(named_options("40", ["30", "40"]))
    ['B']
    """
    options = _option_texts(choices)
    text = unwrap(answer).strip()
    m = _ONLY_LETTER.fullmatch(text)
    if m:
        return {m.group(1).upper()}
    by_text = _letters_for_text(text, options)
    if by_text:
        return by_text
    m = _LABELLED.fullmatch(text)
    if m:
        letter = (m.group(1) or m.group(2) or m.group(3)).upper()
        others = _letters_for_text(m.group(4), options) - {letter}
        return {letter} | others if others and options.get(letter) != _norm(m.group(4)) else {letter}
    valid = set(options) or set(letters or _LETTERS)
    return {c for c in _PROSE_LETTER.findall(text) if c in valid}


def _prose_letters(gold: str) -> str:
    """Without choices, prose letters past E (or the gold letter) are words like "I", not options."""
    return _LETTERS[: max(5, _LETTERS.index(gold) + 1)] if gold in _LETTERS else _LETTERS


def option_letter(reference: Any, choices: Sequence[str] | Mapping[str, str] | None = None) -> str | None:
    """The letter a reference denotes (a letter, "(B)", "B. text", or an option's text), else None.

    >>> option_letter("b"), option_letter("145°", ["120°", "145°"])
    ('B', 'B')
    """
    text = str(reference).strip()
    m = _ONLY_LETTER.fullmatch(text)
    if m:
        return m.group(1).upper()
    options = _option_texts(choices)
    found = _letters_for_text(text, options)
    if len(found) == 1:
        return found.pop()
    m = _LABELLED.fullmatch(text)
    if m:
        return (m.group(1) or m.group(2) or m.group(3)).upper()
    return None


def choice_accuracy(
    completion: str,
    reference: Any,
    choices: Sequence[str] | Mapping[str, str] | None = None,
    *,
    answer_tag: str = "answer",
    extract: str = "tags",
    **_record: Any,
) -> float:
    """1.0 when the answer names exactly the reference option, else 0.0.

    Accepted answer forms: a letter (``B``, ``(B)``, ``B.``, lowercase ``b`` only when it stands
    alone), ``B. text``, the option text itself when ``choices`` are given, or prose naming one
    capital letter (``the answer is B``). An answer naming two or more options (``A or B``, ``A, C``,
    ``B. <text of option C>``) scores 0. The reference may be a letter or the option text. With no
    choices and a reference that is not a letter, the answer must equal it as text (case- and
    whitespace-insensitive).

    >>> choice_accuracy("<answer>(B)</answer>", "B")
    1.0
    >>> choice_accuracy("<answer>B. 145°</answer>", "145°", choices=["120°", "145°"])
    1.0
    >>> choice_accuracy("<answer>A or B</answer>", "B")
    0.0
    """
    answer = extract_final(completion, extract, answer_tag=answer_tag)
    if answer is None or reference is None or len(answer) > MAX_CHOICE_CHARS:
        return 0.0
    gold = option_letter(reference, choices)
    if gold is None:
        return 1.0 if _norm(answer) == _norm(str(reference)) and _norm(answer) else 0.0
    named = named_options(answer, choices, letters=_prose_letters(gold))
    return 1.0 if named == {gold} else 0.0
