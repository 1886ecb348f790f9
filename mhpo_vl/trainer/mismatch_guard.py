"""Stop a run whose rollout engine is not sampling from the trained policy.

With another engine (``rollout.backend: vllm``) each step measures how far the sampler's log-probs of
the sampled tokens are from the trainer's (``rollout/logprob_abs_diff_mean``, nats per response token;
see :mod:`mhpo_vl.algos.rollout_is`). Numerical mismatch is around 1e-6 in float32 and 1e-3 to 1e-2 in
bf16. A mean above ``algo.max_rollout_mismatch`` (1 nat by default) means the engine holds other
weights than the trainer (a partial or failed weight sync): importance weights cannot correct that,
and the run would go on training on another policy's samples with nothing in the logs but a number.
The check reads the metrics after they are reduced over processes, so every rank takes the same decision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from mhpo_vl.errors import UserError

MISMATCH_KEY = "rollout/logprob_abs_diff_mean"


def check_rollout_mismatch(metrics: Mapping[str, float], limit: float, step: int) -> None:
    """Raise :class:`UserError` when ``metrics[MISMATCH_KEY]`` is above ``limit`` or not finite.

    ``metrics``: one step's reduced metrics (identical on every rank); a step without the key (the
    trainer sampled itself) passes. ``limit`` 0 turns the check off.
    """
    value = metrics.get(MISMATCH_KEY)
    if value is None or limit <= 0 or (math.isfinite(value) and value <= limit):
        return
    raise UserError(
        f"step {step}: the rollout engine's log-probs differ from the trainer's by {value:.3g} nats per token "
        f"on average ({MISMATCH_KEY} > algo.max_rollout_mismatch = {limit:g}): the engine is not sampling from "
        "the trained policy (a broken weight sync?); stopping. Check the rollout engine's weights and dtype, "
        "or raise algo.max_rollout_mismatch (0 = never stop)")
