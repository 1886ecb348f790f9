"""``python -m eval run`` on tiny offline models: outputs, counts, resuming after an interruption."""

from __future__ import annotations

import json

import pytest

from eval.__main__ import main
from tests.eval.fixtures import write_geo3k, write_gsm8k, write_math500, write_mathvista, write_wemath


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture()
def text_data(tmp_path):
    write_gsm8k(tmp_path / "data")
    write_math500(tmp_path / "data")
    return tmp_path / "data"


def _run(model, data, out, *extra):
    return main(["run", "--model", str(model), "--benchmarks", "gsm8k,math500", "--data-dir", str(data),
                 "--output", str(out), "--max-new-tokens", "4", "--batch-size", "2", "--no-progress", *extra])


def test_run_two_text_benchmarks_writes_samples_and_results(tiny_model_dir, text_data, tmp_path):
    model = tiny_model_dir("qwen2")
    out = tmp_path / "out"
    assert _run(model, text_data, out, "--limit", "2", "--n-samples", "3") == 0
    samples = _lines(out / "samples.jsonl")
    assert len(samples) == 2 * 2 * 3
    assert {(s["benchmark"], s["id"]) for s in samples} == {
        ("gsm8k", "0"), ("gsm8k", "1"), ("math500", "test/precalculus/807.json"), ("math500", "test/prealgebra/1.json")}
    assert all({"id", "response", "extracted", "correct", "correct_strict", "response_length"} <= set(s)
               for s in samples)
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == str(model)
    for name in ("gsm8k", "math500"):
        m = results["benchmarks"][name]
        assert (m["n"], m["k"], m["n_samples"]) == (2, 3, 6)
        assert 0.0 <= m["accuracy"] <= 1.0 and "pass@k" in m and "extraction_failure_rate" in m
        assert 0.0 <= m["accuracy_strict"] <= 1.0 and m["protocol"]["source"]
        assert m["settings"]["template"] == "boxed"  # the protocol's prompt by default
        assert m["settings"]["temperature"] == 1.0 and m["settings"]["max_new_tokens"] == 4
    assert "| gsm8k | 2 | 3 |" in (out / "results.md").read_text()
    # neither published protocol has a GPT extraction step: no note that rules stand in for one
    assert "extraction_note" not in results and "GPT" not in (out / "results.md").read_text()


def test_run_resumes_after_interruption(tiny_model_dir, text_data, tmp_path):
    model = tiny_model_dir("qwen2")
    out = tmp_path / "out"
    assert _run(model, text_data, out, "--temperature", "0") == 0
    full = (out / "samples.jsonl").read_text().splitlines()
    assert len(full) == 6
    # Interrupted: the first 3 prompts are on disk, the 4th was cut off mid-line.
    kept = full[:3]
    (out / "samples.jsonl").write_text("\n".join(kept) + "\n" + full[3][:20])
    (out / "results.json").unlink()
    assert _run(model, text_data, out, "--temperature", "0") == 0
    resumed = (out / "samples.jsonl").read_text().splitlines()
    assert resumed[:3] == kept and len(resumed) == 6  # kept lines untouched, the rest regenerated
    assert sorted(resumed) == sorted(full)  # greedy: the same responses as the uninterrupted run
    results = json.loads((out / "results.json").read_text())
    assert results["benchmarks"]["gsm8k"]["n"] == 3 and results["benchmarks"]["math500"]["n"] == 3
    # A complete run is not regenerated.
    assert _run(model, text_data, out, "--temperature", "0") == 0
    assert (out / "samples.jsonl").read_text().splitlines() == resumed


def test_run_interrupted_mid_benchmark_then_resumed(tiny_model_dir, text_data, tmp_path, monkeypatch, capsys):
    import eval.runner

    model = tiny_model_dir("qwen2")
    out = tmp_path / "out"
    real_append = eval.runner.append_jsonl
    calls = []

    def append_then_interrupt(path, rows):
        real_append(path, rows)
        calls.append(len(rows))
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(eval.runner, "append_jsonl", append_then_interrupt)
    assert _run(model, text_data, out, "--temperature", "0") == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert len(_lines(out / "samples.jsonl")) == 3 and not (out / "results.json").exists()
    monkeypatch.setattr(eval.runner, "append_jsonl", real_append)
    assert _run(model, text_data, out, "--temperature", "0") == 0
    samples = _lines(out / "samples.jsonl")
    assert len(samples) == 6 and len({(s["benchmark"], s["id"]) for s in samples}) == 6


def test_resume_with_other_settings_is_refused(tiny_model_dir, text_data, tmp_path, capsys):
    model = tiny_model_dir("qwen2")
    out = tmp_path / "out"
    assert _run(model, text_data, out, "--limit", "1") == 0
    capsys.readouterr()
    assert _run(model, text_data, out, "--limit", "1", "--temperature", "0.7") == 2
    err = capsys.readouterr().err
    assert "other settings (temperature 0.0 -> 0.7)" in err and len(err.strip().splitlines()) == 1
    assert _run(model, text_data, out, "--limit", "1", "--temperature", "0.7", "--overwrite") == 0


def test_run_vision_benchmarks_with_byte_images(tiny_model_dir, tmp_path):
    write_mathvista(tmp_path / "data")
    write_geo3k(tmp_path / "data")
    write_wemath(tmp_path / "data")
    out = tmp_path / "out"
    code = main(["run", "--model", str(tiny_model_dir("qwen2_5_vl")), "--benchmarks", "mathvista,geo3k,wemath",
                 "--data-dir", str(tmp_path / "data"), "--output", str(out), "--max-new-tokens", "3",
                 "--limit", "2", "--no-progress"])
    assert code == 0
    full = json.loads((out / "results.json").read_text())
    results = full["benchmarks"]
    # of the three, only MathVista's official pipeline has a GPT extraction step
    assert full["extraction_note"].endswith("official GPT extraction step of mathvista")
    assert f"Note: {full['extraction_note']}." in (out / "results.md").read_text()
    assert results["mathvista"]["n"] == 2 and results["geo3k"]["n"] == 2
    assert set(results["mathvista"]["subsets"]["question_type"]) == {"multi_choice", "free_form"}
    we = results["wemath"]  # two rows of different problems: no complete problem, so no IK/IG/CM/RM yet
    assert we["n"] == 2 and we["n_problems"] == 0 and we["n_incomplete"] == 2 and we["settings"]["template"] == "wemath"
    assert len(_lines(out / "samples.jsonl")) == 6


def test_text_model_on_image_benchmark_is_a_user_error(tiny_model_dir, tmp_path, capsys):
    write_geo3k(tmp_path / "data")
    code = main(["run", "--model", str(tiny_model_dir("qwen2")), "--benchmarks", "geo3k", "--data-dir",
                 str(tmp_path / "data"), "--output", str(tmp_path / "out"), "--no-progress"])
    assert code == 2 and "text-only" in capsys.readouterr().err
