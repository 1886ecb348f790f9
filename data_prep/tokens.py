"""``--max-prompt-tokens``: count a prompt's tokens as the model will see them, image tokens included.

The prompt goes through the processor's chat template as one user turn (images first, then the
text, with a generation prompt) and the processor itself expands each image into its
``grid_t * grid_h * grid_w / merge_size**2`` placeholder tokens. A recipe's system prompt is not
counted: leave room for it.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from data_prep.errors import DataPrepError, Reject
from data_prep.pipeline import PromptCheck


def count_prompt_tokens(processor: Any, prompt: str, images: list[Image.Image]) -> int:
    """Tokens of ``prompt`` with ``images`` after the chat template and image-token expansion."""
    tokenizer = getattr(processor, "tokenizer", processor)
    if images and hasattr(processor, "image_processor"):
        content = [{"type": "image"} for _ in images] + [{"type": "text", "text": prompt}]
        messages = [{"role": "user", "content": content}]
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        encoded = processor(text=[text], images=images)
        return len(encoded["input_ids"][0])
    messages = [{"role": "user", "content": prompt}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def prompt_length_check(processor_dir: str, max_tokens: int | None, min_pixels: int | None = None,
                        max_pixels: int | None = None) -> PromptCheck:
    """A PromptCheck that rejects prompts longer than ``max_tokens`` (no limit when None)."""
    from mhpo_vl.config import ModelConfig
    from mhpo_vl.models.processor import load_processor

    defaults = ModelConfig()
    config = ModelConfig(name_or_path=processor_dir, min_pixels=min_pixels or defaults.min_pixels,
                         max_pixels=max_pixels or defaults.max_pixels)
    if config.max_pixels < config.min_pixels:
        raise DataPrepError(f"--processor-max-pixels {config.max_pixels} is below min_pixels {config.min_pixels}")
    processor = load_processor(config)

    def check(prompt: str, images: list[Image.Image]) -> None:
        if max_tokens is None:
            return
        n = count_prompt_tokens(processor, prompt, images)
        if n > max_tokens:
            raise Reject("prompt_too_long", f"{n} tokens (images included) > --max-prompt-tokens {max_tokens}")

    return check
