"""``python -m eval score`` on hand-written responses with a known accuracy, ``compare``, and CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from eval.__main__ import main
from tests.eval.fixtures import write_gsm8k, write_jsonl, write_math500, write_mathvista

# gsm8k golds: "7", "2000", "4.5" (row-index ids); two samples per prompt.
GSM8K_RESPONSES = [
    {"id": "0", "response": "<think>3+4</think><answer>7</answer>"},         # correct
    {"id": "0", "response": "<answer>8</answer>"},                           # wrong
    {"id": 1, "response": "The total is \\boxed{2,000}."},                   # correct (int id accepted)
    {"id": "1", "response": "blah " * 30 + "#### 2000"},                     # correct via the '####' pattern
    {"id": "2", "response": "<answer>4.50</answer>"},                        # lm-eval exact match: wrong; strict: right
    {"id": "2", "response": "I am not sure. " * 20},                          # no answer: extraction failure
]
MATH500_RESPONSES = [
    {"id": "test/precalculus/807.json", "response": "<answer>(3, \\frac{\\pi}{2})</answer>"},   # correct
    {"id": "test/prealgebra/1.json", "response": "\\boxed{0.75}"},                            # correct
    {"id": "test/algebra/2.json", "response": "<answer>\\sqrt{8}</answer>"},                   # correct
    {"id": "test/algebra/2.json", "response": "<answer>3</answer>"},                           # wrong
]


def _score(tmp_path, benchmark, data, rows, out="out", extra=()):
    responses = write_jsonl(tmp_path / f"{benchmark}_responses.jsonl", rows)
    code = main(["score", "--benchmark", benchmark, "--data", str(data), "--responses", str(responses),
                 "--output", str(tmp_path / out), *extra])
    return code, tmp_path / out


@pytest.mark.parametrize("where", ["data_dir", "benchmark_dir", "file"])
def test_score_gsm8k_exact_accuracy_for_each_kind_of_data_path(tmp_path, where):
    path = write_gsm8k(tmp_path / "data")
    data = {"data_dir": tmp_path / "data", "benchmark_dir": tmp_path / "data" / "gsm8k", "file": path}[where]
    code, out = _score(tmp_path, "gsm8k", data, GSM8K_RESPONSES)
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    m = results["benchmarks"]["gsm8k"]
    assert m["accuracy"] == pytest.approx(3 / 6) and m["n"] == 3 and m["k"] == 2
    assert m["accuracy_strict"] == pytest.approx(4 / 6)  # our numeric verifier accepts 4.50 for 4.5
    assert m["pass@k"] == pytest.approx(2 / 3) and m["pass@k_strict"] == pytest.approx(1.0)
    assert m["extraction_failure_rate"] == pytest.approx(1 / 6) and m["fallback_extracted"] == 1
    assert results["model"] == "gsm8k_responses"
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["correct"] for s in samples] == [True, False, True, True, False, False]
    assert [s["correct_strict"] for s in samples] == [True, False, True, True, True, False]
    assert {"id", "response", "extracted", "correct"} <= set(samples[0]) and samples[0]["extracted"] == "7"
    assert "| gsm8k | 3 | 2 | 50.0 | 66.7 |" in (out / "results.md").read_text()


def test_score_math500_latex_answers_and_merge_into_one_results_file(tmp_path):
    write_gsm8k(tmp_path / "data")
    write_math500(tmp_path / "data")
    assert _score(tmp_path, "math500", tmp_path / "data", MATH500_RESPONSES, extra=["--model-name", "m"])[0] == 0
    code, out = _score(tmp_path, "gsm8k", tmp_path / "data", GSM8K_RESPONSES, extra=["--model-name", "m"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["benchmarks"]) == {"math500", "gsm8k"}
    m = results["benchmarks"]["math500"]
    assert m["accuracy"] == pytest.approx(3 / 4) and m["n"] == 3 and m["k"] == 1 and m["k_max"] == 2
    assert m["subsets"]["subject"]["Algebra"] == {"accuracy": 0.5, "n": 1}


def test_score_mathvista_choice_and_precision(tmp_path):
    write_mathvista(tmp_path / "data")
    rows = [{"id": "1", "response": "<answer>B</answer>"}, {"id": "2", "response": "<answer>2.54 cm</answer>"},
            {"id": "3", "response": "<answer>5</answer>"}, {"id": "4", "response": "<answer>1.333</answer>"}]
    code, out = _score(tmp_path, "mathvista", tmp_path / "data", rows)
    assert code == 0
    m = json.loads((out / "results.json").read_text())["benchmarks"]["mathvista"]
    # official: float('2.54 cm') fails; our numeric verifier reads 2.54 and rounds it to 2.5
    assert m["accuracy"] == pytest.approx(2 / 4) and m["accuracy_strict"] == pytest.approx(3 / 4)
    assert m["subsets"]["question_type"] == {"free_form": {"accuracy": pytest.approx(1 / 3), "n": 3},
                                             "multi_choice": {"accuracy": 1.0, "n": 1}}
    assert m["n_missing"] == 4


def test_extraction_note_only_while_a_benchmark_has_a_gpt_extraction_step(tmp_path):
    write_gsm8k(tmp_path / "data")
    write_mathvista(tmp_path / "data")
    code, out = _score(tmp_path, "gsm8k", tmp_path / "data", GSM8K_RESPONSES, extra=["--model-name", "m"])
    assert code == 0 and "extraction_note" not in json.loads((out / "results.json").read_text())
    assert "GPT" not in (out / "results.md").read_text()
    rows = [{"id": "1", "response": "<answer>B</answer>"}]
    assert _score(tmp_path, "mathvista", tmp_path / "data", rows, extra=["--model-name", "m"])[0] == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["benchmarks"]) == {"gsm8k", "mathvista"}
    assert results["extraction_note"].endswith("official GPT extraction step of mathvista")  # not gsm8k
    assert f"Note: {results['extraction_note']}." in (out / "results.md").read_text()


def test_missing_responses_are_reported_and_not_counted(tmp_path, capsys):
    write_gsm8k(tmp_path / "data")
    code, out = _score(tmp_path, "gsm8k", tmp_path / "data", GSM8K_RESPONSES[:2])
    assert code == 0
    m = json.loads((out / "results.json").read_text())["benchmarks"]["gsm8k"]
    assert m["n"] == 1 and m["n_missing"] == 2 and m["accuracy"] == 0.5
    assert "2 of 3 gsm8k prompts have no response" in capsys.readouterr().err


@pytest.mark.parametrize("rows, text, match", [
    ([{"id": "99", "response": "x"}], None, "1 id(s) not in gsm8k"),
    ([{"idx": "0", "response": "x"}], None, "line 1: needs 'id' and 'response'"),
    ([{"id": "0", "response": 3}], None, "'response' must be a string"),
    (None, '{"id": "0", "response": "x"}\n{bad\n', ":2: invalid JSON"),
])
def test_user_mistakes_exit_2_with_one_line(tmp_path, capsys, rows, text, match):
    write_gsm8k(tmp_path / "data")
    responses = tmp_path / "r.jsonl"
    if text is not None:
        responses.write_text(text)
    else:
        write_jsonl(responses, rows)
    code = main(["score", "--benchmark", "gsm8k", "--data", str(tmp_path / "data"), "--responses", str(responses),
                 "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unknown_benchmark_missing_args_and_bad_numbers_exit_2(tmp_path, capsys):
    assert main(["score", "--benchmark", "gsm9k", "--responses", "r", "--output", str(tmp_path)]) == 2
    assert "unknown benchmark 'gsm9k'" in capsys.readouterr().err
    for argv in (["run", "--model", "m"], ["run", "--model", "m", "--benchmarks", "gsm8k", "--output", "o",
                                           "--n-samples", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and len(err.strip().splitlines()) == 1


def test_optional_judge_model_is_recorded(tiny_model_dir, tmp_path):
    write_gsm8k(tmp_path / "data")
    judge = str(tiny_model_dir("qwen2"))
    code, out = _score(tmp_path, "gsm8k", tmp_path / "data", GSM8K_RESPONSES, extra=["--judge-model", judge])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    # Only the one response with no <answer>, \boxed{} or '####' goes to the judge.
    assert results["judge"]["model"] == judge and results["judge"]["calls"] == 1
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert samples[0]["correct"] is True and "| gsm8k |" in (out / "results.md").read_text()


def test_compare_prints_a_table_and_writes_a_png(tmp_path, capsys):
    write_gsm8k(tmp_path / "data")
    write_math500(tmp_path / "data")
    _score(tmp_path, "gsm8k", tmp_path / "data", GSM8K_RESPONSES, out="a", extra=["--model-name", "m"])
    _score(tmp_path, "math500", tmp_path / "data", MATH500_RESPONSES, out="a")
    _score(tmp_path, "gsm8k", tmp_path / "data", GSM8K_RESPONSES[:1], out="b")
    capsys.readouterr()
    plot = tmp_path / "cmp.png"
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "| benchmark (accuracy, %) | a | b |" in out
    assert "| gsm8k | 50.0 | 100.0 |" in out and "| math500 | 75.0 | - |" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["compare", str(tmp_path / "nope")]) == 2


def test_python_dash_m_eval_help_and_list():
    run = subprocess.run([sys.executable, "-m", "eval", "run", "--help"], capture_output=True, text=True, check=True)
    assert "--n-samples" in run.stdout and "--data-dir" in run.stdout and "--lora" in run.stdout
    listed = subprocess.run([sys.executable, "-m", "eval", "list"], capture_output=True, text=True, check=True)
    assert "mathvista" in listed.stdout and "gsm8k" in listed.stdout
