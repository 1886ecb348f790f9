"""Fallback answer extraction, used only when the verifiers' own rules (``<answer>``, ``\\boxed{}``) find none.

- ``PatternExtractor``: a benchmark's ``answer_patterns`` (e.g. GSM8K's ``#### N``); the last match wins.
- ``LocalJudge``: an optional local LLM that reads the final answer from a free-form response
  (``--judge-model PATH``). Off by default, never needed for the shipped benchmarks, and recorded in
  results.json when used.

Both are ``Extractor``s: ``(record, response) -> str | None``.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from mhpo_vl.evaluation import Extractor

JUDGE_PROMPT = (
    "Read the question and a student's response. Reply with the student's final answer only "
    "(a number, expression, or option letter), or NONE if the response gives no final answer.\n\n"
    "Question:\n{question}\n\nResponse:\n{response}\n\nFinal answer:"
)
_MAX_CHARS = 2000


class PatternExtractor:
    """The first capture group of the last match of any of ``patterns`` (tried in order)."""

    def __init__(self, patterns: list[str]):
        self.patterns = [re.compile(p) for p in patterns]

    def __call__(self, record: dict, response: str) -> Optional[str]:
        for pattern in self.patterns:
            matches = pattern.findall(response[-_MAX_CHARS:])
            if matches and str(matches[-1]).strip():
                return str(matches[-1]).strip()
        return None


class LocalJudge:
    """Greedy-decodes a short final answer with a local causal LM (any model ``load_policy`` loads)."""

    def __init__(self, model_path: str, *, max_new_tokens: int = 24, dtype: str = "auto"):
        from mhpo_vl.config import ModelConfig
        from mhpo_vl.models import get_tokenizer, load_policy, load_processor

        cfg = ModelConfig(name_or_path=model_path, dtype=dtype)
        self.model_path = model_path
        self.model = load_policy(cfg).eval()
        self.tokenizer = get_tokenizer(load_processor(cfg))
        self.max_new_tokens = max_new_tokens
        self.calls = 0

    def _encode(self, text: str) -> Any:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)
            return ids["input_ids"], ids["attention_mask"]
        enc = tok(text, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    def __call__(self, record: dict, response: str) -> Optional[str]:
        import torch

        self.calls += 1
        prompt = JUDGE_PROMPT.format(question=record.get("prompt", "")[:_MAX_CHARS],
                                     response=response[-_MAX_CHARS:])
        input_ids, attention_mask = self._encode(prompt)
        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                      max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id)
        text = self.tokenizer.decode(out[0, input_ids.shape[1]:], skip_special_tokens=True)
        answer = text.strip().splitlines()[0].strip() if text.strip() else ""
        return None if not answer or answer.upper().startswith("NONE") else answer

    def info(self) -> dict:
        """What results.json records about the judge."""
        return {"model": self.model_path, "calls": self.calls, "max_new_tokens": self.max_new_tokens}


def chain(*extractors: Optional[Extractor]) -> Optional[Extractor]:
    """One extractor trying each given one in turn (None entries skipped); None when none given."""
    active = [e for e in extractors if e is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]

    def extract(record: dict, response: str) -> Optional[str]:
        for extractor in active:
            found = extractor(record, response)
            if found is not None:
                return found
        return None

    return extract


def benchmark_extractor(spec: Any, judge: Optional[LocalJudge] = None) -> Optional[Extractor]:
    """The fallback extractor for a benchmark: its ``answer_patterns``, then the judge (if any)."""
    return chain(PatternExtractor(spec.answer_patterns) if spec.answer_patterns else None, judge)
