"""Benchmark evaluation core: batched generation, verifier scoring, Avg@k / pass@k.

One implementation for both ``python -m eval`` and the trainer's periodic evaluation. Records follow
the prepared-record schema (DESIGN.md section 4); ``images`` entries may also be ``{"bytes": ...}``
dicts (decoded by the collator, one batch at a time).

    samples, metrics = evaluate(model, processor, records, n_samples=4, temperature=1.0,
                                max_new_tokens=512, batch_size=16, template="think_answer")
    metrics["accuracy"], metrics["pass@k"]

Scoring is pure and model-free (``score_sample``, ``score_samples``, ``summarize``, ``pass_at_k``,
``avg_at_k``), so existing responses can be scored with the same verifiers.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Optional

# A judge: (record, response) -> the final answer it reads from the response, or None.
Extractor = Callable[[dict, str], Optional[str]]

CORRECT_THRESHOLD = 0.5  # verifiers return 0/1; fractional ones (IoU) use the usual 0.5 cut


# ----------------------------------------------------------------------------- metrics


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one prompt with ``n`` samples of which ``c`` are correct (Chen et al. 2021):
    ``1 - C(n-c, k) / C(n, k)``, computed as a stable product.

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 0, 2), pass_at_k(4, 3, 2)
    (0.25, 0.0, 1.0)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def avg_at_k(correct: Sequence[Sequence[bool | float]]) -> float:
    """Avg@k: the mean over prompts of each prompt's mean correctness over its samples.

    >>> avg_at_k([[1, 0, 0, 1], [1, 1, 1, 1]])
    0.75
    """
    if not correct:
        return 0.0
    return sum(sum(map(float, c)) / len(c) for c in correct) / len(correct)


def pass_ks(k: int) -> list[int]:
    """The pass@j values reported for k samples: powers of two below k, and k itself."""
    ks = [1 << i for i in range(k.bit_length()) if (1 << i) < k]
    return [*ks, k]


# ----------------------------------------------------------------------------- scoring


def _round_match(extracted: str, answer: str, precision: int) -> float:
    """MathVista float rule: both rounded to ``precision`` decimals must agree (units are ignored)."""
    from mhpo_vl.rewards.numeric import parse_number

    pred, gold = parse_number(extracted), parse_number(answer)
    if pred is None or gold is None:
        return 0.0
    return float(round(pred.value, precision) == round(gold.value, precision))


def wrap_answer(answer: str) -> str:
    """A bare final answer as a completion the verifiers read (``\\boxed{...}``)."""
    return "\\boxed{" + answer + "}"


def score_sample(response: str, record: dict, *, extractor: Optional[Extractor] = None,
                 extract: str = "tags") -> dict:
    """Score one response against one record with the verifiers in ``mhpo_vl.rewards``.

    ``extracted`` is the final answer: the last ``<answer>`` block, else the last ``\\boxed{}``, else
    what ``extractor`` (a benchmark's answer pattern such as GSM8K's ``#### N``, or a judge) reads
    (then ``"fallback": True``), else a short bare response taken whole (the verifiers' rule).
    Numeric records with ``meta.precision`` (MathVista floats) compare after rounding. Another
    ``extract`` mode (``boxed``, ``last_number``, ``full_text``; see ``mhpo_vl.rewards.modes``) replaces
    all of that: the verifiers read the answer that mode finds, with no fallback.
    Returns ``{"extracted": str | None, "score": float, "correct": bool}``.
    """
    from mhpo_vl.rewards import accuracy, answer_text, extract_answer
    from mhpo_vl.rewards.modes import check_mode, extract_final

    answer_type = record.get("answer_type", "math")
    precision = (record.get("meta") or {}).get("precision")
    tags = check_mode(extract) == "tags"
    extracted = extract_answer(response) if tags else extract_final(response, extract)
    completion = response
    fallback = False
    if tags and extracted is None and extractor is not None:
        extracted = extractor(record, response)
        fallback = extracted is not None
        if fallback:
            completion = wrap_answer(extracted)
    if tags and extracted is None:
        extracted = answer_text(response)
    if extracted is not None and answer_type == "numeric" and precision is not None:
        score = _round_match(extracted, str(record["answer"]), int(precision))
    else:
        score = float(accuracy(completion, record["answer"], answer_type=answer_type,
                               choices=record.get("choices"), extract="tags" if fallback else extract))
    result = {"extracted": extracted, "score": score, "correct": score >= CORRECT_THRESHOLD}
    if fallback:
        result["fallback"] = True
    return result


def score_samples(samples: Iterable[dict], records: dict[str, dict], *,
                  extractor: Optional[Extractor] = None, extract: str = "tags") -> list[dict]:
    """Score ``{"id", "response", ...}`` samples; returns new dicts with the ``score_sample`` fields."""
    scored = []
    for sample in samples:
        scored.append({**sample, **score_sample(sample["response"], records[sample["id"]], extractor=extractor,
                                                extract=extract)})
    return scored


def _group(samples: Iterable[dict]) -> OrderedDict[str, list[dict]]:
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    for s in samples:
        groups.setdefault(s["id"], []).append(s)
    return groups


def _rate(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _subset_breakdown(groups: OrderedDict[str, list[dict]], records: dict[str, dict]) -> dict:
    table: dict[str, dict[str, list[list[bool]]]] = {}
    for pid, group in groups.items():
        subsets = ((records.get(pid) or {}).get("meta") or {}).get("subsets") or {}
        for name, value in subsets.items():
            table.setdefault(name, {}).setdefault(str(value), []).append([s["correct"] for s in group])
    return {name: {value: {"accuracy": avg_at_k(rows), "n": len(rows)} for value, rows in sorted(values.items())}
            for name, values in table.items()}


def summarize(samples: Sequence[dict], records: dict[str, dict] | None = None) -> dict[str, Any]:
    """Benchmark metrics from scored samples (several per id = several samples per prompt).

    ``accuracy`` is the mean over all samples (= Avg@k with k samples per prompt); ``pass@k`` uses the
    unbiased estimator with k = the smallest sample count among prompts; ``subsets`` breaks accuracy
    down by the record's ``meta.subsets`` values.
    """
    groups = _group(samples)
    counts = [len(g) for g in groups.values()]
    k = min(counts) if counts else 0
    correct = [[bool(s["correct"]) for s in g] for g in groups.values()]
    lengths = [s["response_length"] for s in samples if s.get("response_length") is not None]
    metrics: dict[str, Any] = {
        "accuracy": _rate([float(c) for row in correct for c in row]),
        "avg@k": avg_at_k(correct),
        "n": len(groups),
        "k": k,
        "n_samples": len(samples),
        "mean_score": _rate([float(s["score"]) for s in samples]),
        "extraction_failure_rate": _rate([float(s.get("extracted") is None) for s in samples]),
        "mean_response_length": _rate([float(v) for v in lengths]),
    }
    if k:
        pass_at = {str(j): _rate([pass_at_k(len(row), sum(row), j) for row in correct]) for j in pass_ks(k)}
        metrics["pass@k"] = pass_at[str(k)]
        metrics["pass_at"] = pass_at
    if len(set(counts)) > 1:
        metrics["k_max"] = max(counts)
    fallback = sum(1 for s in samples if s.get("fallback"))
    if fallback:
        metrics["fallback_extracted"] = fallback
    if records:
        subsets = _subset_breakdown(groups, records)
        if subsets:
            metrics["subsets"] = subsets
    return metrics


# ----------------------------------------------------------------------------- generation


def _length_key(record: dict) -> tuple[int, int]:
    return len(record.get("images") or []), len(record.get("prompt") or "")


PAD_ID_SUFFIX = "#pad"  # id suffix of the filler records that even out a rank's share


def rank_share(records: Sequence[dict], rank: int, world: int) -> tuple[list[dict], int]:
    """This rank's share of ``records`` for an evaluation split across ``world`` processes.

    Records are ordered by prompt size (as :func:`evaluate` orders them) and dealt round-robin, so every
    rank gets a like mix of long and short prompts. Every share has ``ceil(len(records) / world)``
    records: shorter ones are topped up with copies of the smallest record (ids suffixed with
    ``PAD_ID_SUFFIX``), so every rank runs the same number of generate batches of the same sizes (the
    collectives of sharded or synced generation line up). Returns ``(share, n_real)``: the first
    ``n_real`` records of ``share`` are real, the rest filler whose samples the caller drops.

    >>> recs = [{"id": str(i), "prompt": "x" * i} for i in range(5)]
    >>> [[r["id"] for r in rank_share(recs, k, 2)[0]] for k in (0, 1)], rank_share(recs, 1, 2)[1]
    ([['4', '2', '0'], ['3', '1', '0#pad0']], 2)
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank_share: rank {rank} is not in [0, {world})")
    if not records:
        return [], 0
    order = sorted(records, key=_length_key, reverse=True)
    share = order[rank::world]
    n_real, size = len(share), -(-len(order) // world)
    share += [{**order[-1], "id": f"{order[-1]['id']}{PAD_ID_SUFFIX}{i}"} for i in range(size - n_real)]
    return share, n_real


def evaluate(
    model: Any,
    processor: Any,
    records: Sequence[dict],
    *,
    n_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    template: str = "think_answer",
    system_prompt: Optional[str] = None,
    min_pixels: Optional[int] = None,
    max_pixels: Optional[int] = None,
    max_prompt_tokens: Optional[int] = None,
    stop_strings: Optional[list[str]] = None,
    extractor: Optional[Extractor] = None,
    extract: str = "tags",
    on_batch: Optional[Callable[[list[dict]], None]] = None,
    backend: Any = None,
    progress: bool = True,
    desc: str = "eval",
) -> tuple[list[dict], dict[str, Any]]:
    """Generate ``n_samples`` responses per record and score them.

    Records are sorted by prompt size (longest first, so memory limits show at once) and generated
    ``batch_size`` prompts at a time (left-padded by the collator). Greedy decoding
    (``temperature == 0``) generates once and repeats the response ``n_samples`` times. ``on_batch``
    gets each finished batch's samples (the eval CLI appends them to disk, for resuming).

    ``extract`` is the answer extraction mode (``tags`` | ``boxed`` | ``last_number`` | ``full_text``).
    ``backend`` is a rollout backend (``mhpo_vl.rollout``; default: HF ``generate``). A vLLM backend
    generates with its own engine, so ``model`` may then be None.

    Returns ``(samples, metrics)``: one dict per sample ``{"id", "sample", "response",
    "response_length", "extracted", "score", "correct"}`` in record order, and ``summarize``'s metrics.
    """
    import torch
    from tqdm.auto import tqdm

    from mhpo_vl.data import PromptCollator
    from mhpo_vl.rollout import HFRolloutBackend, SamplingParams

    if n_samples < 1 or batch_size < 1 or max_new_tokens < 1:
        raise ValueError("n_samples, batch_size and max_new_tokens must be >= 1")
    if len({r["id"] for r in records}) < len(records):
        raise ValueError("evaluate: record ids must be unique")
    collator_kwargs = {k: v for k, v in {"min_pixels": min_pixels, "max_pixels": max_pixels,
                                         "max_prompt_tokens": max_prompt_tokens}.items() if v is not None}
    collator = PromptCollator(processor, template=template, system_prompt=system_prompt, **collator_kwargs)
    greedy = temperature <= 0
    n_gen = 1 if greedy else n_samples
    backend = backend if backend is not None else HFRolloutBackend(processor)
    params = SamplingParams(num_samples=n_gen, temperature=max(temperature, 0.0), top_p=top_p, top_k=top_k,
                            max_new_tokens=max_new_tokens, stop_strings=list(stop_strings or []))
    order = sorted(records, key=_length_key, reverse=True)
    by_id: dict[str, list[dict]] = {}
    was_training = bool(getattr(model, "training", False))
    if model is not None:  # None with a backend that holds its own weights (vLLM)
        model.eval()
    bar = tqdm(total=len(order), desc=desc, unit="prompt", disable=not progress, leave=False)
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            with torch.no_grad():
                rollout = backend.generate(model, collator(list(chunk)), params)
            finished = []
            for i, record in enumerate(chunk):
                for j in range(n_samples):
                    idx = i * n_gen + (0 if greedy else j)
                    response = rollout.texts[idx]
                    sample = {"id": record["id"], "sample": j, "response": response,
                              "response_length": int(rollout.response_lengths[idx])}
                    sample.update(score_sample(response, record, extractor=extractor, extract=extract))
                    finished.append(sample)
                by_id[record["id"]] = finished[-n_samples:]
            if on_batch is not None:
                on_batch(finished)
            bar.update(len(chunk))
    finally:
        bar.close()
        if was_training:
            model.train()
    samples = [s for r in records for s in by_id[r["id"]]]
    return samples, summarize(samples, {r["id"]: r for r in records})
