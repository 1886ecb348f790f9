"""The collator on tiny Qwen2-VL / Qwen2.5-VL / Qwen3-VL processors with mixed batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from mhpo_vl.config import ModelConfig
from mhpo_vl.data import IGNORE_INDEX, PromptCollator, PromptDataset, load_records, load_template
from mhpo_vl.errors import UserError
from mhpo_vl.models import load_processor


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imgs")
    (root / "images").mkdir()
    Image.new("RGB", (56, 56), "red").save(root / "images" / "red.png")
    Image.new("RGB", (120, 80), "blue").save(root / "images" / "blue.png")
    Image.new("L", (64, 64), 128).save(root / "images" / "gray.png")
    return root


def _records(root: Path) -> list[dict]:
    return [
        {"id": "one", "prompt": "What colour is the shape?", "answer": "red", "images": ["images/red.png"],
         "image_root": str(root)},
        {"id": "text", "prompt": "What is 2+2?", "answer": "4", "images": [], "image_root": str(root)},
        {"id": "two", "prompt": "Which image is bluer?", "answer": "second",
         "images": ["images/gray.png", "images/blue.png"], "image_root": str(root)},
    ]


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_mixed_batch_image_tokens_match_pixels(arch, tiny_model_dir, image_dir):
    processor = load_processor(ModelConfig(name_or_path=str(tiny_model_dir(arch))))
    collator = PromptCollator(processor, template="think_answer", system_prompt="Be brief.",
                              min_pixels=32 * 32, max_pixels=96 * 96, max_prompt_tokens=512)
    batch = collator(_records(image_dir))
    ids, mask = batch.inputs["input_ids"], batch.inputs["attention_mask"]
    assert ids.shape == mask.shape and ids.shape[0] == 3
    assert (mask[:, -1] == 1).all(), "left padding: every prompt ends at the last column"
    grid = batch.inputs["image_grid_thw"]
    assert grid.shape == (3, 3)  # three images in total, text row has none
    merge = processor.image_processor.merge_size
    patch = processor.image_processor.patch_size
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    per_row = (ids == image_token).sum(dim=1).tolist()
    per_image = (grid.prod(-1) // merge**2).tolist()
    assert per_row == [per_image[0], 0, per_image[1] + per_image[2]]
    assert batch.inputs["pixel_values"].shape[0] == int(grid.prod(-1).sum())
    assert batch.inputs["pixel_values"].shape[1] == 3 * 2 * patch * patch
    for _t, h, w in grid.tolist():  # resized within [min_pixels, max_pixels]
        assert (h * patch) * (w * patch) <= 96 * 96
    assert "Be brief." in batch.prompt_texts[0] and "<answer>" in batch.prompt_texts[0]
    assert [r["id"] for r in batch.records] == ["one", "text", "two"]


def test_too_long_prompt_is_an_error_naming_the_record(tiny_model_dir, image_dir):
    processor = load_processor(ModelConfig(name_or_path=str(tiny_model_dir("qwen2_5_vl"))))
    collator = PromptCollator(processor, template="plain", max_prompt_tokens=12)
    with pytest.raises(UserError, match="record one: prompt is .* over data.max_prompt_tokens=12"):
        collator(_records(image_dir)[:1])


def test_text_only_model_and_images_rejected(tiny_model_dir, image_dir):
    tokenizer = load_processor(ModelConfig(name_or_path=str(tiny_model_dir("qwen2"))))
    collator = PromptCollator(tokenizer, template="boxed")
    batch = collator([_records(image_dir)[1]])
    assert set(batch.inputs) == {"input_ids", "attention_mask"}
    assert "\\boxed{}" in batch.prompt_texts[0]
    with pytest.raises(UserError, match="has images but the model is text-only"):
        collator(_records(image_dir)[:1])


def test_sft_batch_labels_only_the_answer(tiny_model_dir, image_dir):
    processor = load_processor(ModelConfig(name_or_path=str(tiny_model_dir("qwen2_5_vl"))))
    collator = PromptCollator(processor, template="plain", min_pixels=3136, max_pixels=3136)
    batch = collator.sft_batch(_records(image_dir), "<answer>{answer}</answer>")
    tok = processor.tokenizer
    for row, record in enumerate(_records(image_dir)):
        target = batch["input_ids"][row][batch["labels"][row] != IGNORE_INDEX]
        assert tok.decode(target) == f"<answer>{record['answer']}</answer>{tok.eos_token}"
    assert (batch["labels"] == IGNORE_INDEX).any(dim=1).all()


def test_missing_image_is_a_user_error(tiny_model_dir, image_dir):
    processor = load_processor(ModelConfig(name_or_path=str(tiny_model_dir("qwen2_5_vl"))))
    record = {"id": "gone", "prompt": "?", "answer": "x", "images": ["images/nope.png"], "image_root": str(image_dir)}
    with pytest.raises(UserError, match="record gone: cannot read image"):
        PromptCollator(processor)([record])


def test_templates():
    assert "{prompt}" in load_template("think_answer")
    with pytest.raises(UserError, match="no template 'nosuch'"):
        load_template("nosuch")


def test_dataset_reads_jsonl_and_parquet(tmp_path, image_dir):
    rows = [{"id": 1, "prompt": "p", "answer": "a", "images": [], "answer_type": "text"},
            {"id": "2", "prompt": "q", "answer": "b", "images": ["images/red.png"]}]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = PromptDataset(tmp_path, "train")
    assert len(ds) == 2 and ds[0]["id"] == "1" and ds[1]["answer_type"] == "math"
    assert ds[1]["image_root"] == str(tmp_path)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{**r, "id": str(r["id"])} for r in rows]), tmp_path / "test.parquet")
    assert [r["id"] for r in load_records(tmp_path, "test")] == ["1", "2"]


@pytest.mark.parametrize(("content", "needle"), [
    ('{"id": 1, "prompt": "p", "answer": "a"}\n{bad\n', r"train.jsonl:2: malformed JSON"),
    ('{"id": 1, "prompt": "", "answer": "a"}\n', r"train.jsonl:1: record is missing prompt"),
])
def test_dataset_errors_name_file_and_line(tmp_path, content, needle):
    (tmp_path / "train.jsonl").write_text(content)
    with pytest.raises(UserError, match=needle):
        load_records(tmp_path, "train")


def test_dataset_missing_split(tmp_path):
    (tmp_path / "train.jsonl").write_text("")
    with pytest.raises(UserError, match="no test.jsonl or test.parquet .found: train.jsonl"):
        load_records(tmp_path, "test")
    with pytest.raises(UserError, match="has no records"):
        PromptDataset(tmp_path, "train")


def test_exif_rotation_and_modes(tmp_path):
    from mhpo_vl.data import load_image

    img = Image.new("RGB", (40, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_image("r.jpg", str(tmp_path)).size == (20, 40)
    Image.new("CMYK", (8, 8)).save(tmp_path / "c.jpg")
    assert load_image(str(tmp_path / "c.jpg")).mode == "RGB"
    assert torch.tensor(1)  # keep torch imported for shape checks above
