"""Cumulative hazards for MHPO's Decoupled Hazard Penalty (DHP).

A hazard maps the (stop-gradient) modulated log-ratio psi to zeta >= 0; MHPO weights each token by
exp(-zeta). Positive shifts (psi > 0, ratio above 1) and negative shifts get separate parameters.
The paper's shape is the Weibull cumulative hazard H(u) = (u / lam) ** k, applied to
softplus(+psi) and softplus(-psi). New shapes are added to :data:`HAZARDS` under a name that the
``hazard`` hyperparameter selects.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Hazard = Callable[[torch.Tensor, float, float, float, float], torch.Tensor]


def weibull_hazard(psi: torch.Tensor, k_pos: float, lam_pos: float, k_neg: float, lam_neg: float) -> torch.Tensor:
    """zeta = (softplus(psi) / lam_pos) ** k_pos + (softplus(-psi) / lam_neg) ** k_neg, elementwise.

    Finite for every finite psi (softplus is linear for large inputs; a huge zeta only drives the
    weight exp(psi - zeta) to 0).
    """
    return (F.softplus(psi) / lam_pos) ** k_pos + (F.softplus(-psi) / lam_neg) ** k_neg


HAZARDS: dict[str, Hazard] = {"weibull": weibull_hazard}


def get_hazard(name: str) -> Hazard:
    """The hazard called ``name``; ValueError listing the known ones otherwise."""
    try:
        return HAZARDS[name]
    except KeyError:
        raise ValueError(f"unknown hazard={name!r}; choose one of {', '.join(HAZARDS)}") from None
