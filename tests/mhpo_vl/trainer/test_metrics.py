import importlib.util
import json
import math

import pytest
import torch

from mhpo_vl.errors import UserError
from mhpo_vl.trainer.metrics import (
    MetricsLogger,
    decode_value,
    encode_value,
    one_line_summary,
    read_metrics,
    reduce_metrics,
    summarize_run,
)


def _strict_json(line: str) -> dict:
    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(line, parse_constant=refuse)


def test_log_writes_strict_json_lines_and_reads_non_finite_back(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        logger.log(1, {"reward/mean": 0.5, "grad_norm": float("nan"), "loss": float("inf"),
                       "loss/ratio_min": float("-inf"), "skipped_steps": 1, "eval/accuracy": None})
        logger.log(2, {"reward/mean": 0.75})
        # flushed per line: readable before close
        assert len(read_metrics(tmp_path / "metrics.jsonl")) == 2
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [_strict_json(line)["step"] for line in lines] == [1, 2]
    first = read_metrics(tmp_path / "metrics.jsonl")[0]
    assert math.isnan(first["grad_norm"]) and first["loss"] == math.inf and first["loss/ratio_min"] == -math.inf
    assert first["skipped_steps"] == 1 and isinstance(first["skipped_steps"], int)
    assert first["eval/accuracy"] is None and first["reward/mean"] == 0.5


@pytest.mark.parametrize("value", [0.25, 3, float("nan"), float("inf"), -float("inf"), None, True])
def test_encode_decode_round_trip(value):
    back = decode_value(json.loads(json.dumps(encode_value(value), allow_nan=False)))
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(back)
    else:
        assert back == value


def test_resume_truncates_later_steps(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        for step in range(1, 6):
            logger.log(step, {"reward/mean": step / 10})
    with MetricsLogger(tmp_path, resume_step=3) as logger:
        assert [r["step"] for r in read_metrics(logger.path)] == [1, 2, 3]
        logger.log(4, {"reward/mean": 0.44})
        logger.truncate_after(4)  # the open file keeps appending after a rewrite
        logger.log(5, {"reward/mean": 0.55})
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert records[3]["reward/mean"] == 0.44 and records[4]["reward/mean"] == 0.55


def test_fresh_run_starts_an_empty_file(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 9}\n')
    with MetricsLogger(tmp_path) as logger:  # no resume_step: the caller decides
        assert [r["step"] for r in read_metrics(logger.path)] == [9]
        logger.truncate_after(0)
        logger.log(1, {"loss": 0.0})
    with MetricsLogger(tmp_path, resume_step=0) as logger:
        logger.log(1, {"loss": 0.5})
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"step": 1, "loss": 0.5}]


def test_cut_short_last_line_is_skipped_and_dropped_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 0.1}\n{"step": 2, "lo')
    assert [r["step"] for r in read_metrics(path)] == [1]
    with MetricsLogger(tmp_path, resume_step=1) as logger:
        logger.log(2, {"loss": 0.2})
    assert [r["step"] for r in read_metrics(path)] == [1, 2]


def test_malformed_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(UserError, match=r"metrics\.jsonl:2"):
        read_metrics(path)
    with pytest.raises(UserError, match="not found"):
        read_metrics(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("tracker,module", [("tensorboard", "tensorboard"), ("wandb", "wandb")])
def test_missing_tracker_is_a_clear_user_error(tracker, module, tmp_path):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed")
    with pytest.raises(UserError, match=r"pip install mhpo-vl\[tracking\]"):
        MetricsLogger(tmp_path, **{tracker: True})


def test_reduce_metrics_single_process():
    out = reduce_metrics({"loss": torch.tensor(0.5), "ratio_max": torch.tensor([2.0]), "lr": 1e-3,
                          "bad": torch.tensor(float("nan"), dtype=torch.bfloat16)})
    assert out.keys() == {"loss", "ratio_max", "lr", "bad"}
    assert all(isinstance(v, float) for v in out.values())
    assert out["loss"] == 0.5 and out["ratio_max"] == 2.0 and out["lr"] == pytest.approx(1e-3)
    assert math.isnan(out["bad"])
    assert reduce_metrics({}) == {}
    with pytest.raises(ValueError, match="'v'"):
        reduce_metrics({"v": torch.ones(2)})


class _TwoProcesses:
    """Stands in for accelerate's Accelerator on 2 ranks: the other rank's values are 3x this one's."""

    num_processes = 2
    device = torch.device("cpu")

    def gather(self, tensor):
        return torch.cat([tensor, tensor * 3])


def test_reduce_metrics_across_processes_by_key_suffix():
    out = reduce_metrics({"loss": torch.tensor(1.0), "response_length/max": torch.tensor(2.0),
                          "loss/ratio_min": torch.tensor(-1.0), "grad_norm_max": 4.0}, _TwoProcesses())
    assert out == {"loss": 2.0, "response_length/max": 6.0, "loss/ratio_min": -3.0, "grad_norm_max": 12.0}


def _synthetic(n: int = 20) -> list[dict]:
    records = []
    for step in range(1, n + 1):
        records.append({"step": step, "reward/mean": step / n + 0.001, "accuracy": step / (2 * n),
                        "response_length/mean": 10.0, "grad_norm": 1.0 + (step % 2),
                        "skipped_steps": 1 if step > 10 else 0, "time/step": 0.5})
    records[4]["grad_norm"] = float("nan")  # a skipped step: ignored by the statistics
    return records


def test_summarize_run_and_one_line():
    summary = summarize_run(_synthetic())
    assert summary["steps"] == 20 and summary["last_step"] == 20
    assert summary["reward"]["window"] == 2
    assert summary["reward"]["first"] == pytest.approx(0.076) and summary["reward"]["last"] == pytest.approx(0.976)
    assert summary["grad_norm"]["max"] == 2.0 and summary["grad_norm"]["max_jump"] == 1.0
    assert summary["grad_norm"]["std"] == pytest.approx(0.4986, abs=1e-3)
    assert summary["skipped_steps"] == 1 and summary["total_time_s"] == pytest.approx(10.0)
    assert "eval_accuracy" not in summary
    json.dumps(summary, allow_nan=False)
    line = one_line_summary(summary)
    assert line == "step 20: reward 0.08 -> 0.98, acc 0.04 -> 0.49, grad-norm std 0.499, 1 skipped steps, 10 s"


def test_summarize_empty_run():
    assert summarize_run([]) == {"steps": 0}
    assert one_line_summary(summarize_run([])) == "0 steps"
