"""A model-based reward: a small local causal LM judges each completion; the score is P("yes").

Batched (one forward pass per step's completions) and loaded once per worker process before the
first step (``warm_up``). Like every user reward it runs in a worker process with a time limit, so a
slow or stuck judge costs at most its timeout. In a recipe:

    reward:
      components: {accuracy: 0.8, "recipes/rewards/judge.py:judge": 0.2}
      options: {"recipes/rewards/judge.py:judge": {model_dir: /path/to/local/causal-lm}}
      timeouts: {"recipes/rewards/judge.py:judge": 60}

``model_dir`` is any local directory that ``AutoModelForCausalLM`` / ``AutoTokenizer`` load
(nothing is downloaded). Options: ``device`` (default cpu), ``max_chars`` (the tail of each response
the judge reads, default 2000), ``threads`` (torch threads in this process; default: torch's own).
"""

from __future__ import annotations

from typing import Any

from mhpo_vl.rewards import reward_fn

TEMPLATE = ("Question: {question}\nReference answer: {reference}\nResponse: {response}\n"
            "Is the response correct? Answer yes or no.\nAnswer:")
_JUDGES: dict[tuple[str, str], tuple[Any, Any, int, int]] = {}


def load_judge(model_dir: str, device: str = "cpu", threads: int | None = None) -> tuple[Any, Any, int, int]:
    """(tokenizer, model, id of " yes", id of " no"), loaded once per process, with one forward pass
    done so that the first scored batch pays no first-call costs."""
    key = (str(model_dir), device)
    if key not in _JUDGES:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(model_dir).to(device).eval()
        yes, no = (tokenizer.encode(word, add_special_tokens=False)[0] for word in (" yes", " no"))
        if yes == no:
            raise ValueError(f"judge {model_dir}: ' yes' and ' no' start with the same token")
        with torch.no_grad():
            model(**tokenizer([TEMPLATE.format(question="1+1?", reference="2", response="2")],
                              return_tensors="pt").to(device))
        _JUDGES[key] = (tokenizer, model, yes, no)
    return _JUDGES[key]


@reward_fn(batched=True, warm_up=load_judge)
def judge(completions: list[str], references: list[Any], *, model_dir: str, prompt: list[str] | None = None,
          device: str = "cpu", max_chars: int = 2000, threads: int | None = None, **fields: Any) -> list[float]:
    """P("yes") / (P("yes") + P("no")) of the judge's next token, one score in [0, 1] per completion."""
    import torch

    tokenizer, model, yes, no = load_judge(model_dir, device, threads)
    questions = prompt or [""] * len(completions)
    texts = [TEMPLATE.format(question=q or "", reference=r, response=c[-max_chars:])
             for q, r, c in zip(questions, references, completions)]
    batch = tokenizer(texts, return_tensors="pt", padding=True).to(device)
    with torch.no_grad():
        logits = model(**batch).logits[:, -1, [yes, no]].float()  # (N, 2); left padding: last is real
    return logits.softmax(-1)[:, 0].tolist()
