"""``length_penalty``: DAPO's soft overlong penalty as a reward term (lengths in tokens)."""

from __future__ import annotations

from typing import Any

__all__ = ["length_penalty"]


def length_penalty(
    completion: str = "",
    reference: Any = None,
    *,
    response_length: int,
    max_length: int,
    buffer: int = 0,
    **_record: Any,
) -> float:
    """0 up to ``max_length - buffer`` tokens, then a linear ramp to -1 at ``max_length``, -1 beyond.

    ``response_length`` is the completion's length in tokens (the trainer passes it per sample);
    ``max_length`` is the maximum response length and ``buffer`` DAPO's soft-punishment interval
    (``L_cache``), both usually set in the recipe's reward options. ``buffer=0`` is a hard cutoff.

    >>> length_penalty(response_length=100, max_length=200, buffer=50)
    0.0
    >>> length_penalty(response_length=175, max_length=200, buffer=50)
    -0.5
    >>> length_penalty(response_length=201, max_length=200, buffer=50)
    -1.0
    """
    if max_length <= 0 or not 0 <= buffer <= max_length:
        raise ValueError(
            f"length_penalty: need max_length > 0 and 0 <= buffer <= max_length, got {max_length=}, {buffer=}"
        )
    if response_length < 0:
        raise ValueError(f"length_penalty: response_length must be >= 0, got {response_length}")
    expected = max_length - buffer
    if response_length <= expected:
        return 0.0
    if response_length > max_length:
        return -1.0
    return (expected - response_length) / buffer
