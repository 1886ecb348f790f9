"""Qwen-VL image sizing: `smart_resize` from qwen_vl_utils when it imports, else our own, same rules.

qwen_vl_utils imports torchvision at import time, which is absent on CPU machines here, so it is
imported lazily. The rules: both sides multiples of ``factor`` (28 for Qwen2/2.5-VL, 32 for Qwen3-VL),
pixel count within [min_pixels, max_pixels], aspect ratio kept as closely as possible, ratio <= 200.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

MAX_ASPECT_RATIO = 200
FACTOR = {"qwen2_vl": 28, "qwen2_5_vl": 28, "qwen3_vl": 32}


def _own_smart_resize(height: int, width: int, factor: int = 28, min_pixels: int | None = None,
                      max_pixels: int | None = None) -> tuple[int, int]:
    max_pixels = max_pixels if max_pixels is not None else 16384 * factor**2
    min_pixels = min_pixels if min_pixels is not None else 4 * factor**2
    if max_pixels < min_pixels:
        raise ValueError(f"max_pixels ({max_pixels}) must be >= min_pixels ({min_pixels})")
    if min(height, width) <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio must be at most {MAX_ASPECT_RATIO}, got {height}x{width}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@lru_cache(maxsize=1)
def _reference() -> Callable[..., tuple[int, int]] | None:
    try:
        from qwen_vl_utils import smart_resize  # needs torchvision
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return None
    return smart_resize


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int | None = None,
                 max_pixels: int | None = None) -> tuple[int, int]:
    """Target (height, width) for an image: multiples of ``factor``, area within [min_pixels, max_pixels].

    >>> smart_resize(56, 56, 28, 3136, 1003520)
    (56, 56)
    >>> smart_resize(1000, 500, 28, 3136, 100352)
    (448, 224)
    """
    reference = _reference()
    if reference is not None:
        return tuple(reference(height, width, factor, min_pixels=min_pixels, max_pixels=max_pixels))
    return _own_smart_resize(height, width, factor, min_pixels, max_pixels)
