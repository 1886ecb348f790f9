"""We-Math's official scoring, reimplemented from We-Math/We-Math ``evaluation/four_dimensional_metrics.py``
(row verdicts, IK/IG/CM/RM, strict and loose scores) and ``evaluation/accuracy.py`` (one/two/three-step
accuracy).

Row verdict: the text after the last ``"Answer"`` (the whole response when there is none), with
``<``, ``>``, ``:`` and ``.`` removed and spaces stripped; its first character, if it is a letter A-H,
must equal the gold letter. Deliberate difference: a response without ``"Answer"`` but with our
``<answer>`` block or a ``\\boxed{}`` is read from that content (the official rule would reject it).

Problems: rows sharing ``ID`` within the 2-step or 3-step family form one problem; ``key`` says which
row is sub-problem 1..n (``2steps_1``) and which the composite question (``2steps_multi``). With the
sub-problem verdicts s_i and the composite verdict m, per problem:

- IK (insufficient knowledge): some s_i wrong and m wrong;
- IG (inadequate generalisation): all s_i right and m wrong;
- CM (complete mastery): strict = all s_i right and m right; loose = some s_i right and m right;
- RM (rote memorisation): strict = some s_i wrong and m right; loose = all s_i wrong and m right.

Rates: IK, IG, CM over the number of problems N; RM over CM + RM. Scores:
``(N - 0.5 IG - RM - IK) / N`` with the strict or loose RM count. The official script fixes N = 525
(the testmini problem count); we use the number of complete problems scored, which is 525 on the full
testmini, and also report the fixed-525 values (``four_dimensional_fixed_525``) when that number differs.
A problem missing a row or a response is left out (``n_incomplete``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Optional

from eval.protocols.base import Protocol, Verdict, protocol_meta

_DROP = re.compile(r"[<>:.]")
_FAMILY = re.compile(r"^(\d+)steps_(\d+|multi)$")
COUNT_KEYS = ("IK", "IG", "CM_strict", "CM_loose", "RM_strict", "RM_loose")
TESTMINI_PROBLEMS = 525  # the fixed denominator of the official script


def read_letter(response: str) -> Optional[str]:
    """The option letter the official rule reads, or None.

    >>> read_letter("<Thought process>: ... <Answer>: <B>"), read_letter("Answer: the answer is C")
    ('B', None)
    """
    text = response
    if "Answer" not in response:
        from mhpo_vl.rewards import extract_answer

        found = extract_answer(response)
        text = found if found is not None else response
    text = _DROP.sub("", text.split("Answer")[-1].strip()).strip()
    return text[0] if text and text[0] in "ABCDEFGH" else None


def classify(subs: list[bool], multi: bool) -> dict[str, int]:
    """One complete problem's membership (0/1) in each of the six official categories."""
    any_right, all_right = any(subs), all(subs)
    return {
        "IK": int(not all_right and not multi),
        "IG": int(all_right and not multi),
        "CM_strict": int(all_right and multi),
        "CM_loose": int(any_right and multi),
        "RM_strict": int(not all_right and multi),
        "RM_loose": int(not any_right and multi),
    }


def _ratio(num: float, den: float) -> Optional[float]:
    return num / den if den else None


def rates_and_scores(counts: dict[str, float], n: float) -> dict[str, Optional[float]]:
    """The official rates and scores from category counts, with ``n`` problems as the denominator."""
    out: dict[str, Optional[float]] = {key: _ratio(counts[key], n) for key in ("IK", "IG", "CM_strict", "CM_loose")}
    for mode in ("strict", "loose"):
        out[f"RM_{mode}"] = _ratio(counts[f"RM_{mode}"], counts[f"CM_{mode}"] + counts[f"RM_{mode}"])
        out[f"score_{mode}"] = _ratio(n - 0.5 * counts["IG"] - counts[f"RM_{mode}"] - counts["IK"], n)
    return out


def four_dimensional(problems: list[tuple[list[bool], bool]]) -> dict[str, Any]:
    """Counts, rates and scores for complete problems ``[(sub-problem verdicts, composite verdict)]``."""
    counts = dict.fromkeys(COUNT_KEYS, 0)
    for subs, multi in problems:
        for key, value in classify(subs, multi).items():
            counts[key] += value
    out: dict[str, Any] = {**rates_and_scores(counts, len(problems)), "counts": counts}
    return out


def _problems(samples: list[dict], records: dict[str, dict], j: int) -> tuple[dict, int]:
    """``{(steps, ID): {part: verdict}}`` from the j-th sample of each row, and the rows seen."""
    table: dict[tuple[int, str], dict[str, bool]] = defaultdict(dict)
    seen: dict[str, int] = defaultdict(int)
    for s in samples:
        index = seen[s["id"]]
        seen[s["id"]] += 1
        if index != j:
            continue
        fields = protocol_meta(records[s["id"]])
        m = _FAMILY.match(str(fields.get("key", "")))
        if m:
            table[(int(m.group(1)), str(fields.get("ID")))][m.group(2)] = bool(s["correct"])
    return table, len(seen)


def _mean(values: list[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


class WeMathRules(Protocol):
    name = "wemath"
    extraction = "official rule: text after the last 'Answer', <>:. removed, first character if A-H " \
                 "(without 'Answer', our <answer>/\\boxed{} content)"
    metric_names = (*COUNT_KEYS, "score_strict", "score_loose", "S1", "S2", "S3", "four_dimensional_counts",
                    "n_problems", "four_dimensional_fixed_525")
    scoring = "letter equals the gold; IK/IG/CM/RM and strict/loose scores over problems grouped by ID " \
              "(official four_dimensional_metrics.py), one/two/three-step accuracy (accuracy.py)"

    def verdict(self, record: dict, response: str, extracted: Optional[str], strict: bool) -> Verdict:
        letter = read_letter(response)
        gold = str(protocol_meta(record).get("answer", record["answer"])).strip()
        return Verdict(letter, letter is not None and letter == gold)

    def metrics(self, samples: list[dict], records: dict[str, dict]) -> dict[str, Any]:
        per_sample: list[dict[str, Any]] = []
        k = min((c for c in _counts(samples).values()), default=0)
        for j in range(k):
            table, _ = _problems(samples, records, j)
            complete, incomplete = [], 0
            for (steps, _id), parts in sorted(table.items()):
                subs = [parts.get(str(i)) for i in range(1, steps + 1)]
                if "multi" not in parts or any(v is None for v in subs):
                    incomplete += 1
                    continue
                complete.append(([bool(v) for v in subs], parts["multi"]))
            m = four_dimensional(complete)
            m["S1"] = _mean([float(v) for subs, _ in complete for v in subs])
            for steps in (2, 3):
                m[f"S{steps}"] = _mean([float(multi) for subs, multi in complete if len(subs) == steps])
            m["n_problems"], m["n_incomplete"] = len(complete), incomplete
            per_sample.append(m)
        if not per_sample:
            return {}
        out: dict[str, Any] = {}
        for key in [*COUNT_KEYS, "score_strict", "score_loose", "S1", "S2", "S3"]:
            out[key] = _mean([m[key] for m in per_sample])
        out["four_dimensional_counts"] = {key: _whole(_mean([m["counts"][key] for m in per_sample]))
                                          for key in COUNT_KEYS}
        out["n_problems"] = per_sample[0]["n_problems"]
        out["n_incomplete"] = per_sample[0]["n_incomplete"]
        if out["n_problems"] != TESTMINI_PROBLEMS:  # the official script always divides by 525
            out["four_dimensional_fixed_525"] = rates_and_scores(out["four_dimensional_counts"], TESTMINI_PROBLEMS)
        return out


def _whole(value: Optional[float]) -> Optional[float]:
    """A count averaged over samples: an int when it is whole (always with one sample per row)."""
    return int(value) if value is not None and float(value).is_integer() else value


def _counts(samples: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for s in samples:
        counts[s["id"]] += 1
    return counts
