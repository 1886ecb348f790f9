"""mhpo_vl.evaluation: Avg@k / pass@k maths, verifier scoring per answer type, summaries, and generation."""

from __future__ import annotations

import math
from itertools import combinations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mhpo_vl.evaluation import avg_at_k, evaluate, pass_at_k, pass_ks, score_sample, score_samples, summarize


def _pass_at_k_by_enumeration(n: int, c: int, k: int) -> float:
    """pass@k by definition: the fraction of k-subsets of the n samples holding a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@given(st.integers(1, 9).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_matches_enumeration(nck):
    n, c, k = nck
    assert pass_at_k(n, c, k) == pytest.approx(_pass_at_k_by_enumeration(n, c, k), abs=1e-12)


def test_pass_at_k_known_values_and_errors():
    assert pass_at_k(10, 0, 5) == 0.0 and pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_avg_at_k_and_pass_ks():
    assert avg_at_k([[1, 0, 0, 0], [1, 1, 0, 0]]) == pytest.approx(0.375)
    assert avg_at_k([]) == 0.0
    assert pass_ks(1) == [1] and pass_ks(4) == [1, 2, 4] and pass_ks(6) == [1, 2, 4, 6]


@pytest.mark.parametrize("response, record, correct", [
    ("<think>..</think><answer>\\frac{3}{4}</answer>", {"answer": "0.75", "answer_type": "math"}, True),
    ("so \\boxed{2\\sqrt{2}}", {"answer": "2\\sqrt{2}", "answer_type": "math"}, True),
    ("<answer>3</answer>", {"answer": "4", "answer_type": "math"}, False),
    ("<answer>2,000</answer>", {"answer": "2000", "answer_type": "numeric"}, True),
    ("<answer>(B)</answer>", {"answer": "145°", "answer_type": "choice", "choices": ["120°", "145°"]}, True),
    ("<answer>145°</answer>", {"answer": "145°", "answer_type": "choice", "choices": ["120°", "145°"]}, True),
    ("<answer>A</answer>", {"answer": "145°", "answer_type": "choice", "choices": ["120°", "145°"]}, False),
    # MathVista float rows: rounded to `precision`, unit ignored
    ("<answer>2.54 cm</answer>", {"answer": "2.5", "answer_type": "numeric", "meta": {"precision": 1, "unit": "cm"}}, True),
    ("<answer>1.3333</answer>", {"answer": "1.33", "answer_type": "numeric", "meta": {"precision": 2}}, True),
    ("<answer>1.34</answer>", {"answer": "1.33", "answer_type": "numeric", "meta": {"precision": 2}}, False),
])
def test_score_sample_per_answer_type(response, record, correct):
    result = score_sample(response, record)
    assert result["correct"] is correct and result["score"] == float(correct)


def test_score_sample_extraction_failure_and_fallback_extractor():
    record = {"answer": "72", "answer_type": "numeric"}
    long_response = "I think about it for a long time. " * 10 + "#### 72"
    assert score_sample(long_response, record) == {"extracted": None, "score": 0.0, "correct": False}
    result = score_sample(long_response, record, extractor=lambda rec, resp: resp.rsplit("####", 1)[1].strip())
    assert result == {"extracted": "72", "score": 1.0, "correct": True, "fallback": True}
    assert score_sample(long_response, record, extractor=lambda rec, resp: None)["extracted"] is None
    # The fallback comes before the bare-answer rule: a short "#### 72" is read by the pattern.
    hashes = lambda rec, resp: resp.split("####")[1].strip() if "####" in resp else None  # noqa: E731
    assert score_sample("#### 72", record, extractor=hashes)["correct"] is True
    assert score_sample("#### 72", record)["correct"] is False
    assert score_sample("72", record, extractor=hashes) == {"extracted": "72", "score": 1.0, "correct": True}


def test_summarize_avg_pass_failures_lengths_and_subsets():
    records = {"a": {"id": "a", "answer": "1", "answer_type": "math", "meta": {"subsets": {"kind": "x"}}},
               "b": {"id": "b", "answer": "2", "answer_type": "math", "meta": {"subsets": {"kind": "y"}}}}
    raw = [("a", "<answer>1</answer>"), ("a", "<answer>5</answer>"), ("a", "<answer>1</answer>"),
           ("a", "x " * 80), ("b", "<answer>3</answer>"), ("b", "<answer>3</answer>"), ("b", "<answer>2</answer>"),
           ("b", "<answer>3</answer>")]
    samples = score_samples([{"id": i, "response": r, "response_length": 10 * (n + 1)}
                             for n, (i, r) in enumerate(raw)], records)
    m = summarize(samples, records)
    assert m["n"] == 2 and m["k"] == 4 and m["n_samples"] == 8
    assert m["accuracy"] == pytest.approx(3 / 8) and m["avg@k"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert m["pass@k"] == 1.0 and m["pass_at"]["1"] == pytest.approx(m["avg@k"])
    assert m["pass_at"]["2"] == pytest.approx((pass_at_k(4, 2, 2) + pass_at_k(4, 1, 2)) / 2)
    assert m["extraction_failure_rate"] == pytest.approx(1 / 8)
    assert m["mean_response_length"] == pytest.approx(45.0)
    assert m["subsets"] == {"kind": {"x": {"accuracy": 0.5, "n": 1}, "y": {"accuracy": 0.25, "n": 1}}}


def test_evaluate_generates_k_samples_per_prompt_on_a_tiny_model(tiny_model_dir):
    from mhpo_vl.config import ModelConfig
    from mhpo_vl.models import load_policy, load_processor

    cfg = ModelConfig(name_or_path=str(tiny_model_dir("qwen2")))
    model, processor = load_policy(cfg), load_processor(cfg)
    model.train()
    records = [{"id": str(i), "prompt": "What is 1+1?" * (i + 1), "answer": "2", "answer_type": "math",
                "images": []} for i in range(3)]
    batches = []
    samples, metrics = evaluate(model, processor, records, n_samples=2, temperature=1.0, max_new_tokens=4,
                                batch_size=2, on_batch=batches.append, progress=False)
    assert model.training  # restored after evaluation
    assert [s["id"] for s in samples] == ["0", "0", "1", "1", "2", "2"]
    assert [len(b) for b in batches] == [4, 2]  # 2 prompts x 2 samples, then 1 prompt x 2
    assert batches[0][0]["id"] == "2"  # longest prompt first
    assert all(1 <= s["response_length"] <= 4 and isinstance(s["response"], str) for s in samples)
    assert metrics["n"] == 3 and metrics["k"] == 2
    greedy, _ = evaluate(model, processor, records[:1], n_samples=3, temperature=0.0, max_new_tokens=4,
                         progress=False)
    assert len(greedy) == 3 and len({s["response"] for s in greedy}) == 1
