"""Published scoring protocols: each benchmark's headline ``accuracy`` follows its official scorer.

A benchmark definition names its protocol (``protocol: {name: mathvista, source: ..., differences:
...}``). Every sample is scored twice:

- ``correct_strict``: our verifiers (``mhpo_vl.rewards``: math-verify, choice, numeric), the same
  checks as the RL rewards;
- ``correct``: the benchmark's published rules (``Protocol.verdict``), which give the headline
  ``accuracy`` that papers and leaderboards report. Where the official pipeline asks a GPT model to
  extract the answer (MathVista, MathVerse), our rule extraction (``<answer>``, ``\\boxed{}``, the
  benchmark's answer patterns, a short bare response) stands in for it.

``Protocol.metrics`` adds benchmark-level numbers the official code reports (e.g. We-Math's IK, IG,
CM, RM and scores). Each protocol module cites the official file it follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from eval.protocols.base import Protocol, Verdict
from eval.protocols.gsm8k import Gsm8kExactMatch
from eval.protocols.mathverse import MathVerseRules
from eval.protocols.mathvision import MathVisionRules
from eval.protocols.mathvista import MathVistaRules
from eval.protocols.verifier import VerifierProtocol
from eval.protocols.wemath import WeMathRules

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    VerifierProtocol(), MathVistaRules(), MathVisionRules(), MathVerseRules(), WeMathRules(), Gsm8kExactMatch(),
)}

__all__ = ["PROTOCOLS", "Protocol", "ProtocolRef", "Verdict", "get_protocol", "apply_protocol", "protocol_metrics"]


@dataclass
class ProtocolRef:
    """A benchmark's protocol: which rules score it, where they are published, and how we differ."""

    name: str = "verifier"
    source: str = ""       # the official code or harness followed, with the file
    differences: str = ""  # deliberate differences from it


def get_protocol(name: str) -> Protocol:
    """The protocol registered under ``name``."""
    return PROTOCOLS[name]


def apply_protocol(protocol: Protocol, samples: list[dict], records: dict[str, dict]) -> list[dict]:
    """Samples scored by our verifiers -> the same samples with the protocol's verdict as ``correct``.

    ``correct_strict`` keeps the verifier's verdict; ``extracted_official`` is what the protocol read
    (when it differs from ``extracted``). Samples that already carry ``correct_strict`` are kept as
    they are (scored earlier, e.g. by an interrupted run).
    """
    out = []
    for sample in samples:
        if "correct_strict" in sample:
            out.append(sample)
            continue
        record = records[sample["id"]]
        verdict = protocol.verdict(record, sample["response"], sample.get("extracted"), bool(sample["correct"]))
        row = {**sample, "correct": verdict.correct, "correct_strict": bool(sample["correct"])}
        if verdict.extracted != sample.get("extracted"):
            row["extracted_official"] = verdict.extracted
        out.append(row)
    return out


def protocol_metrics(protocol: Protocol, samples: list[dict], records: dict[str, dict],
                     ref: Optional[ProtocolRef] = None) -> dict[str, Any]:
    """``accuracy_strict`` (our verifiers), the protocol's own metrics, and a ``protocol`` note."""
    from mhpo_vl.evaluation import summarize

    strict = summarize([{**s, "correct": s.get("correct_strict", s["correct"])} for s in samples])
    metrics: dict[str, Any] = {"accuracy_strict": strict["accuracy"]}
    if "pass@k" in strict:
        metrics["pass@k_strict"] = strict["pass@k"]
    metrics.update(protocol.metrics(samples, records))
    metrics["protocol"] = {
        "name": protocol.name,
        "source": ref.source if ref else "",
        "extraction": protocol.extraction,
        "scoring": protocol.scoring,
        **({"differences": ref.differences} if ref and ref.differences else {}),
        "accuracy": "official-protocol verdicts (samples.jsonl 'correct')",
        "accuracy_strict": "our verifiers, as in the RL rewards (samples.jsonl 'correct_strict')",
    }
    return metrics
