"""MathVerse, following ZrrSkywalker/MathVerse ``evaluation/score_answer_s2.py`` with rules in place of
its two GPT steps (``extract_answer_s1.py`` extraction, then a GPT consistency judgement).

The judge prompt (``evaluation/prompts.py``, ``demo_prompt_score``) counts an answer as consistent when
it matches the standard answer completely; for multiple choice the option letter or that option's
text; for free form the same value expressed another way. Our stand-in: exact string equality (the
official ``--quick_match``), the option letter or the gold option's text (options parsed from the
question's ``Choices:`` block), or our verifiers' equivalence (math-verify for free form). Reported
overall and per ``problem_version`` as published.
"""

from __future__ import annotations

import re
from typing import Optional

from eval.protocols.base import Protocol, Verdict, protocol_meta

_LETTER = re.compile(r"^\(?([A-H])\)?(?:[.:)：]|\s|$)")
_SPACE = re.compile(r"\s+")
_OPTION_LINE = re.compile(r"^\s*(?:\(([A-H])\)|([A-H])\s*[:.：])\s*(.+?)\s*$", re.M)


def parse_options(question: str) -> dict[str, str]:
    """``{"A": "40°", ...}`` from the ``Choices:`` block of a MathVerse question (empty when none).

    >>> parse_options("Find x.\\nChoices:\\nA:40°\\nB:50°")
    {'A': '40°', 'B': '50°'}
    """
    head, sep, block = question.partition("Choices:")
    return {m.group(1) or m.group(2): m.group(3) for m in _OPTION_LINE.finditer(block)} if sep else {}


def _norm(text: str) -> str:
    return _SPACE.sub("", text.replace("$", "")).rstrip(".").lower()


class MathVerseRules(Protocol):
    name = "mathverse"
    gpt_extraction = True  # extract_answer_s1.py
    extraction = "our rules in place of GPT: <answer>, \\boxed{}, a short bare response"
    scoring = ("rules in place of the GPT judge: exact match (official quick_match), option letter or the "
               "gold option's text for multiple choice, else math-verify equivalence")

    def verdict(self, record: dict, response: str, extracted: Optional[str], strict: bool) -> Verdict:
        if extracted is None:
            return Verdict(None, False)
        fields = protocol_meta(record)
        gold = str(fields.get("answer", record["answer"])).strip()
        if extracted.strip() == gold or strict:
            return Verdict(extracted, True)
        if fields.get("question_type") == "multi-choice":
            from mhpo_vl.rewards.extract import unwrap

            text = unwrap(extracted)
            letter = _LETTER.match(text.strip())
            if letter:
                return Verdict(extracted, letter.group(1) == gold.rstrip(".:"))
            option = (fields.get("options") or {}).get(gold.rstrip(".:"))
            return Verdict(extracted, option is not None and _norm(text) == _norm(option))
        return Verdict(extracted, False)
