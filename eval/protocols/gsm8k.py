"""GSM8K as lm-evaluation-harness scores it (``lm_eval/tasks/gsm8k/gsm8k.yaml``, the ``strict-match``
filter that the Open LLM Leaderboard reported): the first ``#### N`` in the response (our ``<answer>`` /
``\\boxed{}`` come first, since our templates ask for them; a judge's reading is used when neither is
there), then exact string match after removing ``,`` and ``$``, everything up to ``"#### "`` and a
trailing ``.``, ignoring case. A bare response without ``####`` has no answer, as in strict-match.

So ``2,000`` matches ``2000``, but ``4.50`` does not match ``4.5`` (our numeric verifier accepts it:
that is ``accuracy_strict``).
"""

from __future__ import annotations

import re
from typing import Optional

from eval.protocols.base import Protocol, Verdict

_IGNORE = (re.compile(","), re.compile(r"\$"), re.compile(r"(?s).*#### "), re.compile(r"\.$"))
_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")


def normalize(text: str) -> str:
    """lm-eval's ``regexes_to_ignore`` for gsm8k, then strip and lowercase.

    >>> normalize("$1,234."), normalize("so #### 7")
    ('1234', '7')
    """
    for pattern in _IGNORE:
        text = pattern.sub("", text)
    return text.strip().lower()


class Gsm8kExactMatch(Protocol):
    name = "gsm8k_exact"
    extraction = "last <answer>, else last \\boxed{}, else the first '#### N' (lm-eval strict-match), else a " \
                 "judge's reading (--judge-model); no bare-response rule"
    scoring = "exact match after removing ',', '$', text up to '#### ' and a trailing '.', ignoring case"

    def verdict(self, record: dict, response: str, extracted: Optional[str], strict: bool) -> Verdict:
        from mhpo_vl.rewards import extract_answer

        answer = extract_answer(response)
        if answer is None:
            match = _STRICT.search(response)
            answer = match.group(1) if match else None
        if answer is None and extracted is not None and extracted != response.strip():
            answer = extracted  # read by a judge model
        if answer is None:
            return Verdict(None, False)
        return Verdict(answer, normalize(answer) == normalize(str(record["answer"])))
