"""GSM8K as lm-evaluation-harness's strict-match scores it."""

from __future__ import annotations

import pytest

from eval.protocols.gsm8k import Gsm8kExactMatch, normalize

RECORD = {"id": "0", "answer": "1012"}


@pytest.mark.parametrize("extracted, verdict", [
    ("1,012", True),      # commas ignored
    ("$1012.", True),     # '$' and a trailing '.' ignored
    ("1012.0", False),    # exact match: not a number comparison
    ("1012 apples", False),
    (None, False),
])
def test_exact_match_after_lm_eval_normalisation(extracted, verdict):
    assert Gsm8kExactMatch().verdict(RECORD, "", extracted, True).correct is verdict


def test_normalize():
    assert normalize("He has #### 1,234") == "1234" and normalize("ABC") == "abc"
