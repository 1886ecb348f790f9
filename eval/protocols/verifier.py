"""The default protocol: our verifiers are the published rule (math-verify for MATH-500, AIME, AMC,
HMMT as in lighteval; our checks for the offline sets)."""

from __future__ import annotations

from typing import Optional

from eval.protocols.base import Protocol, Verdict


class VerifierProtocol(Protocol):
    """Headline = our verifiers' verdict (``accuracy`` equals ``accuracy_strict``)."""

    name = "verifier"
    extraction = "last <answer>...</answer>, else last \\boxed{}, else the benchmark's answer patterns, " \
                 "else a short bare response"
    scoring = "mhpo_vl.rewards verifier for the answer type (math: math-verify equivalence; choice: option " \
              "letter or text; numeric: value within 1e-4 relative)"

    def verdict(self, record: dict, response: str, extracted: Optional[str], strict: bool) -> Verdict:
        return Verdict(extracted, strict)
