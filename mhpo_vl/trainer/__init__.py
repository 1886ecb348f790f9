"""RL loop, SFT warm start, checkpoints, metrics and plots."""


def run_training(cfg, dry_run: bool = False):
    """`mhpo-vl train`: see mhpo_vl.trainer.rl."""
    from mhpo_vl.trainer.rl import run_training as _run

    return _run(cfg, dry_run=dry_run)


def run_sft(cfg):
    """`mhpo-vl sft`: see mhpo_vl.trainer.sft."""
    from mhpo_vl.trainer.sft import run_sft as _run

    return _run(cfg)


__all__ = ["run_sft", "run_training"]
