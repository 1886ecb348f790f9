"""Test launcher: one RL run (`python -m torch.distributed.run ... sharded_launcher.py RECIPE KEY=VALUE...`).

The real trainer, with three test-only additions, all gated by environment variables:
- each prompt's G samples are generated on their own with a seed from the prompt id and the global data
  position, so 1 process and 2 processes with the same global batch draw the same samples;
- ``MHPO_TEST_NAN_RANK`` / ``MHPO_TEST_NAN_STEP``: that rank's policy loss is NaN at that step (1-based);
- ``MHPO_TEST_OUT``: per rank, the prompt ids of each step, the full weights and optimizer step count
  at the end.
The process group is set up here with a short timeout (``MHPO_TEST_PG_TIMEOUT``, s), so a desync
between ranks fails in seconds instead of hanging for torch's default 30 minutes.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch


def _init_process_group() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        timeout = datetime.timedelta(seconds=float(os.environ.get("MHPO_TEST_PG_TIMEOUT", "30")))
        dist.init_process_group("gloo", timeout=timeout)


def make_trainer(cfg: Any) -> Any:
    """An RLTrainer with the per-prompt seeded rollouts and the env-gated NaN and recording hooks."""
    from mhpo_vl.trainer.batching import concat_rollouts
    from mhpo_vl.trainer.rl import RLTrainer

    class TestTrainer(RLTrainer):
        def __init__(self, cfg: Any) -> None:
            super().__init__(cfg)
            self.out = Path(os.environ["MHPO_TEST_OUT"]) if os.environ.get("MHPO_TEST_OUT") else None
            nan_rank, nan_step = os.environ.get("MHPO_TEST_NAN_RANK"), os.environ.get("MHPO_TEST_NAN_STEP")
            if nan_rank is not None and int(nan_rank) == self.parallel.rank:
                loss_fn = self.loss_fn

                def poisoned(*args: Any, **kwargs: Any) -> Any:
                    loss, metrics = loss_fn(*args, **kwargs)
                    return (loss * float("nan"), metrics) if self.step + 1 == int(nan_step) else (loss, metrics)

                self.loss_fn = poisoned

        def _generate(self, n_prompts: int) -> Any:
            source = self.source
            indices = source.sampler.take(n_prompts)
            position = source.sampler.position
            parts = []
            for index in indices:
                record = source.dataset[index]
                torch.manual_seed(1_000_003 * position + index)
                with self.accelerator.autocast(), self.parallel.gathered(self.model):
                    parts.append(source.backend.generate(self.unwrapped, source.collator([record]), source.sampling()))
            if self.out is not None:
                with open(self.out / f"prompts_rank{self.parallel.rank}.jsonl", "a") as f:
                    f.write(json.dumps({"step": self.step + 1, "indices": indices}) + "\n")
            return concat_rollouts(parts, self.tokenizer.pad_token_id)

        def record_final_state(self) -> None:
            from safetensors.torch import save_file

            from mhpo_vl.trainer.parallel import iter_full_weights

            weights = {n: t.detach().cpu().contiguous().clone() for n, t in iter_full_weights(self.model)}
            steps = [float(s["step"]) for s in self.optimizer.state_dict()["state"].values() if "step" in s]
            if self.out is None:
                return
            rank = self.parallel.rank
            save_file(weights, str(self.out / f"weights_rank{rank}.safetensors"))
            (self.out / f"state_rank{rank}.json").write_text(json.dumps(
                {"optimizer_steps": max(steps) if steps else 0, "skipped_total": self.skipped_total}))

    return TestTrainer(cfg)


def main(argv: list[str]) -> int:
    import torch.distributed as dist

    from mhpo_vl.config import load_config

    _init_process_group()  # this launcher's own group (the trainer leaves it alone): ended here
    try:
        trainer = make_trainer(load_config(argv[0], argv[1:]))
        trainer.train()
        trainer.record_final_state()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
