"""Processor loading that works without torchvision.

On machines without torchvision, transformers cannot build the published Qwen-VL processors (their
video processor needs it), so AutoProcessor raises or silently returns a bare tokenizer. We then build
an image-only processor of the same family from the image processor + tokenizer in the same files.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from transformers import (
    AutoImageProcessor,
    AutoProcessor,
    AutoTokenizer,
    ProcessorMixin,
    Qwen2_5_VLProcessor,
    Qwen2VLProcessor,
    Qwen3VLProcessor,
)

from mhpo_vl.config import ModelConfig
from mhpo_vl.errors import UserError

log = logging.getLogger(__name__)


def _image_only(base: type) -> type:
    """A subclass of a Qwen-VL processor whose only parts are an image processor and a tokenizer."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):  # noqa: N807
        # Skip the parent's video-processor check (it needs torchvision); keep its token bookkeeping.
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.video_processor = None
        self.chat_template = chat_template if chat_template is not None else tokenizer.chat_template
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        self.vision_start_token = "<|vision_start|>"
        self.vision_end_token = "<|vision_end|>"
        self.vision_start_token_id = tokenizer.convert_tokens_to_ids(self.vision_start_token)
        self.vision_end_token_id = tokenizer.convert_tokens_to_ids(self.vision_end_token)

    return type(f"ImageOnly{base.__name__}", (base,), {"__init__": __init__, "__module__": __name__})


IMAGE_ONLY_PROCESSORS = {
    "qwen2_vl": _image_only(Qwen2VLProcessor),
    "qwen2_5_vl": _image_only(Qwen2_5_VLProcessor),
    "qwen3_vl": _image_only(Qwen3VLProcessor),
}


def set_pixel_range(image_processor: Any, min_pixels: int | None = None, max_pixels: int | None = None) -> None:
    """Make the image processor resize images to an area within [min_pixels, max_pixels] (None: keep)."""
    size = dict(getattr(image_processor, "size", None) or {})
    for key, name, value in (("shortest_edge", "min_pixels", min_pixels), ("longest_edge", "max_pixels", max_pixels)):
        if value:
            size[key] = value
            if hasattr(image_processor, name):
                setattr(image_processor, name, value)
    image_processor.size = size


def load_processor(model_cfg: ModelConfig, model_type: str | None = None) -> Any:
    """Load the processor (VLMs) or tokenizer (text LMs) for ``model_cfg.name_or_path``.

    Images are resized by the processor within ``[model_cfg.min_pixels, model_cfg.max_pixels]``.
    Prompts are left-padded (generation).
    """
    path = model_cfg.name_or_path
    if model_cfg.gguf_file:
        from mhpo_vl.models.gguf import load_gguf_tokenizer, resolve_gguf

        return _prepare_tokenizer(load_gguf_tokenizer(resolve_gguf(model_cfg.gguf_file, path)))
    if not path:
        raise UserError("model.name_or_path is empty: set it to a local model directory or a hub id")
    if model_type is None:
        from transformers import AutoConfig

        try:
            model_type = AutoConfig.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code).model_type
        except OSError as exc:
            raise UserError(f"cannot load model config from {path!r}: {exc}") from None
    processor: Any = None
    try:
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code)
    except (ImportError, OSError, AttributeError, ValueError) as exc:
        log.debug("AutoProcessor failed for %s (%s); building an image-only processor", path, exc)
    if model_type in IMAGE_ONLY_PROCESSORS and not hasattr(processor, "image_processor"):
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code)
        image_processor = AutoImageProcessor.from_pretrained(path)
        processor = IMAGE_ONLY_PROCESSORS[model_type](image_processor=image_processor, tokenizer=tokenizer)
    if processor is None:
        processor = AutoTokenizer.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code)
    _prepare_tokenizer(get_tokenizer(processor))
    if isinstance(processor, ProcessorMixin) and hasattr(processor, "image_processor"):
        set_pixel_range(processor.image_processor, model_cfg.min_pixels, model_cfg.max_pixels)
    return processor


def _prepare_tokenizer(tokenizer: Any) -> Any:
    """Left padding (generation) and a pad token (the EOS token when the model has none)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def get_tokenizer(processor: Any) -> Any:
    """The tokenizer inside a processor (or the tokenizer itself)."""
    return getattr(processor, "tokenizer", processor)


def is_multimodal(processor: Any) -> bool:
    """True when the processor can take images."""
    return hasattr(processor, "image_processor")


PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json",
                   "chat_template.jinja")


def save_processor(processor: Any, out: str | Path, source: str | Path | None = None) -> None:
    """Save ``processor`` into ``out`` so a model saved there loads standalone (e.g. by ``mhpo-eval``).

    Files of the ``source`` directory's processor layout (e.g. a video processor config) are copied as
    they are, so Auto classes load ``out`` the same way as ``source``.
    """
    processor.save_pretrained(str(out))
    src = Path(source) if source else None
    if src is None or not src.is_dir():
        return
    for name in PROCESSOR_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, Path(out) / name)
