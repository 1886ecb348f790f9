"""GSM8K as lm-evaluation-harness's strict-match scores it."""

from __future__ import annotations

import pytest

from eval.protocols.gsm8k import Gsm8kExactMatch, normalize

RECORD = {"id": "0", "answer": "1012"}


@pytest.mark.parametrize("response, verdict", [
    ("<answer>1,012</answer>", True),        # commas ignored
    ("\\boxed{$1012.}", True),              # '$' and a trailing '.' ignored
    ("<answer>1012.0</answer>", False),      # exact match: not a number comparison
    ("<answer>1012 apples</answer>", False),
    ("So #### 1012 and later #### 5", True),  # strict-match takes the first '#### N'
    ("1012", False),                          # bare response: strict-match finds no '####'
])
def test_exact_match_after_lm_eval_normalisation(response, verdict):
    from mhpo_vl.rewards import answer_text

    assert Gsm8kExactMatch().verdict(RECORD, response, answer_text(response), True).correct is verdict


def test_a_judge_reading_is_used_when_no_rule_finds_an_answer():
    response = "I computed one thousand and twelve."
    assert Gsm8kExactMatch().verdict(RECORD, response, "1012", True).correct is True


def test_normalize():
    assert normalize("He has #### 1,234") == "1234" and normalize("ABC") == "abc"
