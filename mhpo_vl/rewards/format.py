"""``format_reward``: the completion is exactly ``<think>...</think>`` then ``<answer>...</answer>``."""

from __future__ import annotations

from typing import Any

__all__ = ["format_reward"]


def format_reward(
    completion: str,
    reference: Any = None,
    *,
    think_tag: str = "think",
    answer_tag: str = "answer",
    think_prefilled: bool = False,
    **_record: Any,
) -> float:
    """1.0 for ``<think>T</think> <answer>A</answer>`` with T and A non-empty, else 0.0.

    Each of the four tags must occur exactly once, in that order, with only whitespace before the
    think block, between the blocks and after the answer. ``think_prefilled=True`` is for chat
    templates that already put ``<think>`` in the prompt: the completion must then start inside the
    think block (no opening tag). Tag names are configurable; ``reference`` is ignored.

    >>> format_reward("<think>2+2=4</think>\\n<answer>4</answer>")
    1.0
    >>> format_reward("<think>2+2=4</think><answer>4</answer> trailing text")
    0.0
    >>> format_reward("<think> </think><answer>4</answer>")
    0.0
    >>> format_reward("<reasoning>r</reasoning><final>4</final>", think_tag="reasoning", answer_tag="final")
    1.0
    """
    if not isinstance(completion, str):
        return 0.0
    tags = [f"<{think_tag}>", f"</{think_tag}>", f"<{answer_tag}>", f"</{answer_tag}>"]
    counts = [completion.count(tag) for tag in tags]
    if counts != [0 if think_prefilled else 1, 1, 1, 1]:
        return 0.0
    text = completion.strip()
    think_open = 0 if think_prefilled else len(tags[0])
    if not think_prefilled and not text.startswith(tags[0]):
        return 0.0
    if not text.endswith(tags[3]):
        return 0.0
    think_close = text.find(tags[1])
    answer_open = text.find(tags[2])
    if not think_open <= think_close < answer_open:
        return 0.0
    thought = text[think_open:think_close]
    between = text[think_close + len(tags[1]) : answer_open]
    answer = text[answer_open + len(tags[2]) : len(text) - len(tags[3])]
    return 1.0 if thought.strip() and not between.strip() and answer.strip() else 0.0
