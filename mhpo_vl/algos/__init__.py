"""Policy losses (MHPO and baselines), aggregation, advantages, KL estimators.

    from mhpo_vl.algos import POLICY_LOSSES, group_advantages
    adv = group_advantages(rewards, group_size=8)                 # (N,)
    loss, metrics = POLICY_LOSSES["mhpo"](logp, old_logp, adv, mask)
"""

from mhpo_vl.algos.advantages import (
    ADVANTAGES,
    compute_advantages,
    group_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
    zero_variance_groups,
)
from mhpo_vl.algos.aggregation import AGG_MODES, aggregate
from mhpo_vl.algos.hazards import HAZARDS
from mhpo_vl.algos.kl import KL_ESTIMATORS, kl_penalty
from mhpo_vl.algos.losses import (
    POLICY_LOSSES,
    cispo_loss,
    dapo_loss,
    dr_grpo_loss,
    get_policy_loss,
    gmpo_loss,
    grpo_loss,
    gspo_loss,
    loss_defaults,
    mhpo_loss,
    sapo_loss,
)
from mhpo_vl.algos.summary import step_summary
from mhpo_vl.algos.weights import TOKEN_WEIGHTS, WEIGHT_KINDS, token_weights

__all__ = [
    "ADVANTAGES",
    "AGG_MODES",
    "HAZARDS",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "TOKEN_WEIGHTS",
    "WEIGHT_KINDS",
    "aggregate",
    "cispo_loss",
    "compute_advantages",
    "dapo_loss",
    "dr_grpo_loss",
    "get_policy_loss",
    "gmpo_loss",
    "group_advantages",
    "grpo_loss",
    "gspo_loss",
    "kl_penalty",
    "loss_defaults",
    "mhpo_loss",
    "reinforce_pp_advantages",
    "rloo_advantages",
    "sapo_loss",
    "step_summary",
    "token_weights",
    "zero_variance_groups",
]
