import json
import subprocess
import sys

from transformers import AutoModelForImageTextToText

from mhpo_vl.config import config_from_dict
from mhpo_vl.trainer import run_sft
from mhpo_vl.trainer.metrics import read_metrics


def test_sft_learns_the_answer_format_and_saves_a_loadable_model(tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--n", "32",
                    "--output", str(data)], check=True, capture_output=True)
    cfg = config_from_dict({
        "model": {"name_or_path": str(tiny_model_dir("qwen2_5_vl")), "min_pixels": 3136, "max_pixels": 3136},
        "data": {"train_dir": str(data), "prompt_template": "plain", "max_prompt_tokens": 64},
        "sft": {"output_dir": str(tmp_path / "sft"), "max_steps": 12, "batch_size": 8, "lr": 3e-3},
        "trainer": {"mixed_precision": "no"}, "logging": {"progress_bar": False},
    })
    summary = run_sft(cfg)
    losses = [m["loss"] for m in read_metrics(tmp_path / "sft" / "metrics.jsonl")]
    assert len(losses) == 12 and losses[-1] < losses[0] * 0.5
    assert json.loads((tmp_path / "sft" / "summary.json").read_text())["steps"] == 12
    assert summary["final_loss"] == losses[-1]
    AutoModelForImageTextToText.from_pretrained(tmp_path / "sft")
    assert (tmp_path / "sft" / "preprocessor_config.json").is_file()
