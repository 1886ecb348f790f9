"""--max-prompt-tokens with a tiny local processor: image tokens are counted, long prompts rejected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from data_prep.__main__ import main


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen3_vl"])
def test_prompt_too_long_counts_image_tokens(tmp_path: Path, tiny_model_dir, arch: str) -> None:
    pytest.importorskip("mhpo_vl.models.processor", reason="needs mhpo_vl.models.load_processor")
    model = tiny_model_dir(arch)
    Image.new("RGB", (56, 56), (255, 0, 0)).save(tmp_path / "small.png")  # 4 image tokens
    Image.new("RGB", (112, 112), (0, 255, 0)).save(tmp_path / "big.png")  # 16 image tokens
    rows = [
        {"id": "text", "prompt": "How many shapes?", "answer": "1"},
        {"id": "small", "prompt": "How many shapes?", "answer": "1", "image": "small.png"},
        {"id": "big", "prompt": "How many shapes?", "answer": "1", "image": "big.png"},
        {"id": "long", "prompt": "How many shapes? " * 20, "answer": "1"},
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    from data_prep.tokens import count_prompt_tokens
    from mhpo_vl.config import ModelConfig
    from mhpo_vl.models.processor import load_processor

    processor = load_processor(ModelConfig(name_or_path=str(model), min_pixels=56 * 56, max_pixels=224 * 224))
    text = count_prompt_tokens(processor, "How many shapes?", [])
    small = count_prompt_tokens(processor, "How many shapes?", [Image.open(tmp_path / "small.png")])
    big = count_prompt_tokens(processor, "How many shapes?", [Image.open(tmp_path / "big.png")])
    assert big - small == 16 - 4 and small - text == 4 + 2  # + vision start/end tokens

    limit = small  # the text-only and small-image prompts fit, the big image and the long text do not
    out = tmp_path / "out"
    assert main(["jsonl", "--input", str(tmp_path / "in.jsonl"), "--output", str(out), "--processor", str(model),
                 "--max-prompt-tokens", str(limit), "--processor-min-pixels", str(56 * 56),
                 "--processor-max-pixels", str(224 * 224)]) == 0
    kept = [json.loads(x)["id"] for x in (out / "train.jsonl").read_text().splitlines()]
    rejects = {json.loads(x)["id"]: json.loads(x)["reason"] for x in (out / "rejects.jsonl").read_text().splitlines()}
    assert kept == ["text", "small"]
    assert rejects == {"big": "prompt_too_long", "long": "prompt_too_long"}


def test_bad_processor_dir_is_a_user_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "in.jsonl").write_text('{"prompt": "q", "answer": "1"}\n')
    code = main(["jsonl", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o"),
                 "--processor", str(tmp_path / "nothing"), "--max-prompt-tokens", "10"])
    assert code == 2 and "Traceback" not in capsys.readouterr().err
