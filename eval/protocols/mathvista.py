"""MathVista's official scoring, reimplemented from lupantech/MathVista ``evaluation/calculate_score.py``
(``normalize_extracted_answer`` + ``safe_equal``) and the rule shortcuts of
``evaluation/extract_answer.py``; our rule extraction stands in for its GPT extraction step (the
``<answer>`` / ``\\boxed{}`` content with whole-answer wrappers such as ``$...$`` and ``\\text{}`` removed,
as the GPT extractor returns a bare answer).

Normalisation of the extracted answer, by the row's published ``question_type`` / ``answer_type``:

- multi_choice: a ``(X)`` letter in the text, or a bare option letter, selects that option's text;
  anything else is mapped to the option with the smallest edit distance (so ``70`` reads as ``70°``,
  and an empty extraction as the shortest option, as the official code does);
- integer: ``str(int(float(x)))`` (``9,335`` fails, ``4.7`` reads as ``4``);
- float: ``str(round(float(x), precision))``;
- list (and other types): the text as is.

Correct when the normalised text equals the published ``answer`` exactly.

Thousands separators are not aligned with MATH-V's: here the official code rejects them too. ``float``
fails on ``9,335``, and the GPT extractor's prompt (``evaluation/prompts/ext_ans.py``) neither asks it to
drop separators nor shows a grouped number, so an answer written ``9,335`` is counted wrong, as the
deterministic official steps count it; our verifiers (``accuracy_strict``) accept it.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from eval.protocols.base import Protocol, Verdict, protocol_meta

_PAREN_LETTER = re.compile(r"\(([a-zA-Z])\)")
_QUICK = re.compile(r'The answer is "(.*)"\.')


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (unit insert/delete/substitute costs).

    >>> edit_distance("70", "70°"), edit_distance("kitten", "sitting")
    (1, 3)
    """
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def nearest_choice(text: str, choices: list[str]) -> str:
    """The first choice with the smallest edit distance to ``text``."""
    distances = [edit_distance(text, c) for c in choices]
    return choices[distances.index(min(distances))]


def normalize(extraction: Any, choices: list[str], question_type: str, answer_type: str,
              precision: Optional[int]) -> Optional[str]:
    """The official normalisation of an extracted answer (see the module docstring).

    >>> normalize("(B) 145", ["120°", "145°"], "multi_choice", "text", None)
    '145°'
    >>> normalize("9,335", [], "free_form", "integer", None) is None
    True
    >>> normalize("1.333", [], "free_form", "float", 2)
    '1.33'
    """
    if question_type == "multi_choice":
        text = extraction.strip() if isinstance(extraction, str) else str(extraction)
        letters = _PAREN_LETTER.findall(text)
        if letters:
            text = letters[0].upper()
        options = [chr(ord("A") + i) for i in range(len(choices))]
        if text in options:
            return choices[options.index(text)]
        return nearest_choice(text, choices)
    try:
        if answer_type == "integer":
            return str(int(float(extraction)))
        if answer_type == "float":
            return str(round(float(extraction), precision))
        if answer_type == "list":
            return str(extraction)
    except Exception:  # noqa: BLE001 - the official code maps any conversion failure to None
        return None
    return extraction


def official_extraction(response: str, fields: dict, extracted: Optional[str]) -> str:
    """The official extraction shortcuts, then our rules in place of the GPT call ("" when none read)."""
    from mhpo_vl.rewards import extract_answer

    if response == "":
        return ""
    if fields.get("question_type") == "multi_choice" and response in (fields.get("choices") or []):
        return response
    for kind, convert in (("integer", int), ("float", float)):
        if fields.get("answer_type") == kind:
            try:
                return str(convert(response))
            except (ValueError, OverflowError):
                pass
    from mhpo_vl.rewards.extract import unwrap

    tagged = extract_answer(response)
    if tagged is not None:
        return unwrap(tagged)
    quick = _QUICK.search(response)
    if quick:
        return quick.group(1)
    return unwrap(extracted) if extracted is not None else ""


class MathVistaRules(Protocol):
    name = "mathvista"
    gpt_extraction = True  # evaluation/extract_answer.py
    extraction = ("official shortcuts (response equals an option; parses as the integer/float answer type), "
                  "then our rules in place of GPT: <answer>, \\boxed{}, 'The answer is \"X\".', a short bare response; "
                  "whole-answer wrappers ($...$, \\text{}) removed as the GPT extractor would")
    metric_names = ("skills (accuracy per skill, as calculate_score.py reports it)",)
    scoring = ("official normalize_extracted_answer (option letter -> text, else nearest option by edit "
               "distance; int(float(x)); round(float(x), precision)) then exact string equality (safe_equal)")

    def verdict(self, record: dict, response: str, extracted: Optional[str], strict: bool) -> Verdict:
        fields = protocol_meta(record)
        text = official_extraction(response, fields, extracted)
        choices = [str(c) for c in fields.get("choices") or []]
        qtype = fields.get("question_type", "free_form")
        if qtype == "multi_choice" and not choices:
            return Verdict(text, False)
        precision = fields.get("precision")
        prediction = normalize(text, choices, qtype, fields.get("answer_type", "text"),
                               int(precision) if precision is not None else None)
        return Verdict(text, prediction == str(fields.get("answer", record["answer"])))

    def metrics(self, samples: list[dict], records: dict[str, dict]) -> dict[str, Any]:
        """Accuracy per skill: a problem counts once for each skill in its ``metadata.skills`` list."""
        table: dict[str, list[float]] = {}
        for s in samples:
            for skill in protocol_meta(records[s["id"]]).get("skills") or []:
                table.setdefault(str(skill), []).append(float(s["correct"]))
        if not table:
            return {}
        return {"skills": {k: {"accuracy": sum(v) / len(v), "n_samples": len(v)} for k, v in sorted(table.items())}}
