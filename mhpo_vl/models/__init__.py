"""Policy and processor loading, LoRA, Qwen-VL image sizing and tiny offline models."""

from mhpo_vl.models.loading import apply_lora, is_vision_param, load_policy, trainable_parameters
from mhpo_vl.models.processor import get_tokenizer, is_multimodal, load_processor
from mhpo_vl.models.resize import FACTOR, smart_resize
from mhpo_vl.models.tiny import ARCHS, MODEL_SIZES, VLM_ARCHS, build_model_of_size, build_tiny_model

__all__ = [
    "ARCHS", "FACTOR", "MODEL_SIZES", "VLM_ARCHS", "apply_lora", "build_model_of_size", "build_tiny_model", "get_tokenizer", "is_multimodal",
    "is_vision_param", "load_policy", "load_processor", "smart_resize", "trainable_parameters",
]
