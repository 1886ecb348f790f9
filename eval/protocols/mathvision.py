"""MATH-V's official scoring, reimplemented from mathllm/MATH-V ``evaluation/evaluate.py`` (answer
extraction from the response) and ``evaluation/utils.py`` (``find_math_answer``, ``_strip_string``,
``is_equal``, ``eval_tuple``).

Extraction: a trailing ``" C."`` / ``" (C)."`` or a leading ``"C\\n"`` reads as that letter; a number
after the last ``"is "`` is taken; without ``\\boxed{`` the text after the last "the (final/correct)
answer is" / "the answer should be" (first line, first sentence) is kept; with several boxes only the
last counts. ``find_math_answer`` then lowercases, takes the box content and the value after ``=``,
and strips LaTeX decoration (spaces, ``\\left``, degrees, ``$``, units km/m^3/units, ``\\text``).
Correct when ``is_equal(gold, answer)`` or, for multiple choice, ``is_equal(gold option text, answer)``:
equal after lowercasing, or tuples equal element-wise to 2 decimals, or both numbers equal to 2 decimals.
Numbers are read with a safe evaluator (:mod:`eval.protocols.latex_value`) in place of latex2sympy +
``eval``; like latex2sympy it reads thousands separators, so ``1,680`` equals ``1680``.

Deliberate differences: a response with an ``<answer>...</answer>`` block (our think_answer template) is
read as that block's content; the official code knows only ``\\boxed{}``. A comma is a thousands
separator only when the whole answer is one number in the strict form ``d{1,3}(,ddd)+`` (sign and
decimal part allowed): latex2sympy's number token also takes ``12345,678``, grouped numbers inside an
expression (``2\\times 1,000``) and a bracketed ``(1,680)`` or ``[1,680]`` as 1680, which we keep as
text or a tuple; decimal commas (``1,5``) and lists (``1,2,3``) are no number in either.
"""

from __future__ import annotations

import re
from typing import Optional, Union

from eval.protocols.base import Protocol, Verdict, protocol_meta
from eval.protocols.latex_value import latex_number

_FLAGS = ("the final answer is", "the answer is", "the correct answer is", "the answer should be")
_BOXED = re.compile(r"oxed{(.*)}", re.S)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _cut_after(text: str, flag: str) -> str:
    kept = text.split(flag)[-1].strip()
    if flag in text:
        kept = kept.split("\n")[0].split(". ")[0]
    return kept


def _fix_sqrt(text: str) -> str:
    parts = text.split("\\sqrt")
    out = parts[0]
    for part in parts[1:]:
        out += "\\sqrt{" + part[0] + "}" + part[1:] if part and part[0] != "{" else "\\sqrt" + part
    return out


def _fix_fracs(text: str) -> str:
    parts = text.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if part and part[0] == "{":
            out += part
            continue
        if len(part) < 2:
            return text
        num, den, rest = part[0], part[1], part[2:]
        out += "{" + num + "}" + (den + rest if den == "{" else "{" + den + "}" + rest)
    return out


def _fix_slash(text: str) -> str:
    parts = text.split("/")
    if len(parts) != 2:
        return text
    try:
        num, den = int(parts[0]), int(parts[1])
    except ValueError:
        return text
    return f"\\frac{{{num}}}{{{den}}}" if text == f"{num}/{den}" else text


def strip_string(text: str) -> str:
    """MATH-style clean-up as MATH-V's ``_strip_string`` does it."""
    text = text.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    text = text.replace("tfrac", "frac").replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    text = text.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "").replace("$", "")
    text = text.split("\\text{ ")[0].replace("\\%", "")
    text = text.replace(" .", " 0.").replace("{.", "{0.")
    if not text:
        return text
    if text[0] == ".":
        text = "0" + text
    if len(text.split("=")) == 2:
        text = text.split("=")[-1]
    if len(text.split("\\approx")) == 2:
        text = text.split("\\approx")[-1]
    if "sqrt" in text:
        text = _fix_sqrt(text)
    text = text.replace(" ", "")
    if "sqrt" in text:
        text = _fix_fracs(text)
    if text == "0.5":
        text = "\\frac{1}{2}"
    return _fix_slash(text)


def find_math_answer(text: str) -> str:
    """The answer inside a response as MATH-V's ``find_math_answer`` reads it (lowercased)."""
    text = text.lower().replace("{}", "")
    boxed = _BOXED.findall(text)
    ans = boxed[-1] if boxed else text
    close, opening = ans.find("}"), ans.find("{")
    if close != -1 and (opening == -1 or close < opening):
        ans = ans.split("}")[0]
    ans = ans.split("=")[-1].split("\\approx")[-1]
    for old, new in ((" ", ""), ("\\,", ""), ("∞", "\\infty"), ("+\\infty", "\\infty"), ("\\\\", "\\"),
                     ("\n", ""), ("\\text", ""), ("\\mbox", ""), ("bmatrix", "pmatrix"), ("\\left", ""),
                     ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("{m}^3", ""), ("m^3", ""),
                     ("{units}", ""), ("units", ""), ("{km}", ""), ("km", "")):
        ans = ans.replace(old, new)
    return strip_string(ans)


def extract(response: str) -> str:
    """The model answer as ``evaluation/evaluate.py`` extracts it from a response."""
    answer = response.strip()
    for c in "ABCDE":
        if (answer.endswith(f" {c}.") or answer.endswith(f" ({c}).") or answer.startswith(f"{c}\n")
                or answer.startswith(f"({c})\n") or answer.startswith(f"({c}) {c}\n")):
            answer = c
    tail = answer.split("is ")[-1].rstrip(".")
    if _is_number(tail):
        answer = tail
    if "oxed{" not in answer:
        for flag in _FLAGS:
            answer = _cut_after(answer, flag)
            answer = _cut_after(answer, flag.replace("the", "The"))
    elif answer.count("oxed{") > 1:
        answer = "\\boxed{" + answer.split("oxed{")[-1]
    answer = find_math_answer(answer)
    for wrapped in [f"({c})" for c in "abcde"] + [f"{{{c}}}" for c in "abcde"]:  # official order
        answer = answer.replace(wrapped, wrapped[1])
    return answer.rstrip(".").lstrip(":").strip()


def _round2(value: Union[int, float]) -> Union[int, float]:
    return round(value, 2)


def _tuple_form(text: str) -> str:
    """``eval_tuple``: ``(a,b,...)`` / ``[a,b,...]`` with numeric elements rounded to 2 decimals."""
    if len(text) < 2:
        return text
    inner = text[1:-1].split(",")
    pair = text[0] + text[-1]
    if pair not in ("()", "[]") or len(inner) < 2:
        return text
    out = []
    for item in inner:
        if "infty" in item or item in ("a", "-a"):
            out.append(item)
            continue
        value = latex_number(item)
        if value is None:
            return text
        out.append(str(_round2(value)))
    return text[0] + ",".join(out) + text[-1]


def is_equal(answer: str, gold: str) -> bool:
    """MATH-V's ``is_equal``: lowercase equality, tuple equality, or equal numbers to 2 decimals
    (``1,680`` is the number 1680: strict thousands form only, see the module docstring).

    >>> is_equal("1,680", "1680"), is_equal("1,5", "15"), is_equal("(1,680)", "1680")
    (True, False, False)
    """
    answer, gold = answer.lower(), gold.lower()
    if not answer.replace(" ", "") or not gold.replace(" ", ""):
        return False
    if gold.strip() == answer.strip():
        return True
    answer, gold = _tuple_form(answer), _tuple_form(gold)
    if gold == answer:
        return True
    a, g = latex_number(answer), latex_number(gold)
    return a is not None and g is not None and _round2(a) == _round2(g)


class MathVisionRules(Protocol):
    name = "mathvision"
    extraction = ("official rules of evaluation/evaluate.py: trailing/leading option letter, 'the answer is ...', "
                  "last \\boxed{}, then find_math_answer clean-up; an <answer> block is read as the response")
    scoring = ("official is_equal against the gold and, for multiple choice, the gold option's text: equal "
               "lowercased, equal tuples, or equal numbers to 2 decimals")

    def verdict(self, record: dict, response: str, extracted: Optional[str], strict: bool) -> Verdict:
        from mhpo_vl.rewards.extract import _tag_content

        tagged = _tag_content(response, "answer")
        answer = extract(tagged if tagged is not None else response)
        fields = protocol_meta(record)
        gold = str(fields.get("answer", record["answer"]))
        options = [str(o) for o in fields.get("options") or []]
        index = ord(gold) - ord("A") if len(gold) == 1 else -1
        gold_text = options[index] if options and 0 <= index < len(options) else ""
        return Verdict(answer, is_equal(gold, answer) or is_equal(gold_text, answer))
