"""Draw each policy loss's per-token gradient weight against the ratio r (docs/loss_weights.png).

The weight is -d l_t / d logp_t / A for one token with advantage A = +1 (left) or -1 (right): the
factor each loss puts on the token's log-prob gradient relative to plain policy gradient (GRPO's
weight is r inside the clip range, 0 where clipped). Run: ``python scripts/plot_loss_weights.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from mhpo_vl.algos import POLICY_LOSSES  # noqa: E402

# dr_grpo has GRPO's per-token objective (it differs in aggregation and advantages): one curve for both.
CURVES = [("grpo / dr_grpo" if name == "grpo" else name, name, {}) for name in POLICY_LOSSES if name != "dr_grpo"]
CURVES.append(("mhpo (dhp_normalize)", "mhpo", {"dhp_normalize": True}))


def gradient_weight(name: str, ratios: torch.Tensor, advantage: float, **hparams) -> torch.Tensor:
    """-d l_t / d logp_t / A for one token per ratio (each its own response, old logp = 0)."""
    n = ratios.numel()
    logp = ratios.log().view(n, 1).double().requires_grad_()
    adv = torch.full((n,), advantage, dtype=torch.float64)
    loss, _ = POLICY_LOSSES[name](logp, torch.zeros_like(logp), adv, torch.ones(n, 1, dtype=torch.bool),
                                  agg="seq-mean-token-sum", **hparams)
    (grad,) = torch.autograd.grad(loss, logp)
    return (-grad.view(-1) * n / advantage).detach()


def plot(out: Path) -> Path:
    """Write the two-panel figure to ``out`` and return its path."""
    ratios = torch.linspace(0.2, 3.0, 561, dtype=torch.float64)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    for ax, advantage in zip(axes, (1.0, -1.0)):
        for label, name, hparams in CURVES:
            style = {"lw": 2.6, "color": "black"} if label == "mhpo" else {"lw": 1.4}
            if hparams:
                style = {"lw": 1.8, "color": "black", "ls": "--"}
            ax.plot(ratios, gradient_weight(name, ratios, advantage, **hparams), label=label, **style)
        ax.axvline(1.0, color="grey", lw=0.6)
        ax.set_title(f"A = {advantage:+.0f}")
        ax.set_xlabel("ratio r = pi_theta / pi_old")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("gradient weight  -dl/dlogp / A")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle("Per-token gradient weight vs. ratio (default hyperparameters)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "loss_weights.png")
    print(f"wrote {plot(parser.parse_args().out)}")


if __name__ == "__main__":
    main()
