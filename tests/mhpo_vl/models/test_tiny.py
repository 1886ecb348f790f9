import pytest
import torch
from PIL import Image
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoTokenizer,
)

from mhpo_vl.config import ModelConfig
from mhpo_vl.models import build_tiny_model, load_processor

VLM_ARCHS = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]


def _prompt(processor, n_images: int, text: str) -> str:
    content = [{"type": "image"}] * n_images + [{"type": "text", "text": text}]
    return processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                         add_generation_prompt=True)


@pytest.mark.parametrize("arch", VLM_ARCHS)
def test_vlm_reloads_with_auto_classes_and_generates(arch, tiny_model_dir):
    path = tiny_model_dir(arch)
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == arch
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    assert AutoTokenizer.from_pretrained(path).convert_tokens_to_ids("<|image_pad|>") == config.image_token_id
    assert AutoImageProcessor.from_pretrained(path) is not None
    processor = load_processor(ModelConfig(name_or_path=str(path), min_pixels=28 * 28, max_pixels=128 * 128))
    prompts = [_prompt(processor, 1, "What colour is the shape?"), _prompt(processor, 2, "Which is bigger?"),
               _prompt(processor, 0, "A text-only question.")]
    images = [Image.new("RGB", (56, 56), "red"), Image.new("RGB", (64, 48), "blue"),
              Image.new("RGB", (100, 100), "green")]
    batch = processor(text=prompts, images=images, return_tensors="pt", padding=True)
    merge = processor.image_processor.merge_size ** 2
    n_image_tokens = int((batch["input_ids"] == config.image_token_id).sum())
    assert n_image_tokens == int(batch["image_grid_thw"].prod(-1).sum()) // merge
    assert (batch["attention_mask"][:, -1] == 1).all(), "prompts must be left-padded"
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(logits).all()
    torch.manual_seed(0)
    out = model.generate(**batch, do_sample=True, max_new_tokens=5, num_return_sequences=2,
                         pad_token_id=processor.tokenizer.pad_token_id)
    assert out.shape[0] == 6 and out.shape[1] <= batch["input_ids"].shape[1] + 5


def test_text_model_reloads_and_generates(tiny_model_dir):
    path = tiny_model_dir("qwen2")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = load_processor(ModelConfig(name_or_path=str(path)))
    assert not hasattr(tokenizer, "image_processor")
    text = tokenizer.apply_chat_template([{"role": "user", "content": "2+2?"}], tokenize=False,
                                         add_generation_prompt=True)
    batch = tokenizer([text, text + " more"], return_tensors="pt", padding=True)
    out = model.generate(**batch, do_sample=True, max_new_tokens=4)
    assert out.shape[0] == 2


def test_same_seed_same_weights(tmp_path):
    a = build_tiny_model("qwen2_5_vl", tmp_path / "a", seed=3)
    b = build_tiny_model("qwen2_5_vl", tmp_path / "b", seed=3)
    c = build_tiny_model("qwen2_5_vl", tmp_path / "c", seed=4)
    sa, sb, sc = (AutoModelForImageTextToText.from_pretrained(p).state_dict() for p in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


def test_unknown_arch_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown arch"):
        build_tiny_model("llama", tmp_path)


def test_named_sizes_larger_is_tens_of_millions_and_unknown_size_is_an_error(tmp_path):
    from mhpo_vl.models import MODEL_SIZES, build_model_of_size
    from mhpo_vl.models.tiny import tiny_config

    ids = {"eos": 1, "pad": 0, "image": 2, "video": 3, "vision_start": 4, "vision_end": 5}
    config = tiny_config("qwen2_vl", 850, special_ids=ids, **MODEL_SIZES["larger"])
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    assert 20e6 < params < 40e6, params
    assert config.text_config.hidden_size // config.text_config.num_attention_heads == 64
    with pytest.raises(ValueError, match="unknown model size 'huge'"):
        build_model_of_size("qwen2_vl", tmp_path, "huge")
