"""The protocol interface: a per-sample verdict plus optional benchmark-level metrics."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional


class Verdict(NamedTuple):
    """What the official rules read from a response (``extracted``) and whether it is correct."""

    extracted: Optional[str]
    correct: bool


class Protocol:
    """Base class. ``name`` is the YAML ``protocol.name``; ``extraction`` and ``scoring`` are one-line
    descriptions shown by ``mhpo-eval list --details`` and written to results.json; ``gpt_extraction``:
    the official pipeline has a GPT answer-extraction step, for which our rule extraction stands in."""

    name = ""
    extraction = ""
    scoring = ""
    gpt_extraction = False
    metric_names: tuple[str, ...] = ()  # benchmark-level metrics ``metrics`` adds

    def verdict(self, record: dict, response: str, extracted: Optional[str], strict: bool) -> Verdict:
        """The official verdict for one response; ``extracted`` is our rule extraction (or None) and
        ``strict`` our verifiers' verdict."""
        raise NotImplementedError

    def metrics(self, samples: list[dict], records: dict[str, dict]) -> dict[str, Any]:
        """Extra benchmark-level metrics the official code reports (default: none)."""
        return {}


def protocol_meta(record: dict) -> dict:
    """The published fields an adapter kept for the protocol (``record["meta"]["protocol"]``)."""
    return (record.get("meta") or {}).get("protocol") or {}
