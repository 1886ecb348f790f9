"""Verifier rewards: answer extraction, math / choice / numeric / IoU / text accuracy, format and length
terms, a registry and a parallel batch scorer.

Every verifier is ``fn(completion, reference, **options) -> float``, never executes model text, is
safe from any thread and in worker processes, and returns within about a second on any input:
math-verify comparisons run in a small pool of worker processes with a hard timeout
(:mod:`.pool`), after cheap guards (:mod:`.guards`) refuse inputs that would blow up sympy.
User reward functions run under per-call time limits, by default in warm worker processes
(:mod:`.isolation`); failures score ``on_error`` and are counted (:mod:`.combine`).
"""

from .bbox import iou_reward
from .choice import choice_accuracy
from .combine import BatchScores, CombinedReward, combine, reward_from_config
from .extract import answer_text, extract_answer
from .format import format_reward
from .length import length_penalty
from .maths import math_accuracy
from .numeric import numeric_accuracy
from .pool import configure_pool, pool_stats, shutdown_pool
from .registry import ANSWER_TYPES, REWARDS, accuracy, resolve_reward, text_accuracy
from .userfn import reward_fn

__all__ = [
    "extract_answer",
    "answer_text",
    "math_accuracy",
    "choice_accuracy",
    "numeric_accuracy",
    "iou_reward",
    "text_accuracy",
    "format_reward",
    "length_penalty",
    "accuracy",
    "ANSWER_TYPES",
    "REWARDS",
    "resolve_reward",
    "combine",
    "reward_from_config",
    "reward_fn",
    "CombinedReward",
    "BatchScores",
    "configure_pool",
    "pool_stats",
    "shutdown_pool",
]
