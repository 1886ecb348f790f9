"""Where the RL loop's rollouts come from: the seeded prompt order, the collator and the rollout engine.

The HF backend samples from the training model itself (whole weights, gathered under FSDP2); a vLLM
engine holds its own copy of the weights, which :meth:`RolloutSource.sync_weights` refreshes.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from mhpo_vl.config import Config
from mhpo_vl.data import PromptCollator
from mhpo_vl.rollout import SamplingParams
from mhpo_vl.rollout.factory import make_rollout_backend
from mhpo_vl.rollout.types import Rollout
from mhpo_vl.rollout.weights import engine_weights, sync_filter
from mhpo_vl.trainer.batching import PromptSampler
from mhpo_vl.trainer.parallel import Parallel, iter_full_weights


class RolloutSource:
    """Prompts of ``dataset`` in this rank's share of a seeded order -> grouped rollouts from ``rollout.backend``."""

    def __init__(self, cfg: Config, processor: Any, dataset: Any, accelerator: Any, parallel: Parallel) -> None:
        self.cfg, self.dataset, self.accelerator, self.parallel = cfg, dataset, accelerator, parallel
        self.collator = PromptCollator(processor, template=cfg.data.prompt_template,
                                       system_prompt=cfg.data.system_prompt, min_pixels=cfg.model.min_pixels,
                                       max_pixels=cfg.model.max_pixels, max_prompt_tokens=cfg.data.max_prompt_tokens)
        self.backend = make_rollout_backend(cfg, processor, seed=cfg.trainer.seed + accelerator.process_index)
        self.sampler = PromptSampler(len(dataset), cfg.trainer.seed, cfg.data.shuffle,
                                     accelerator.process_index, accelerator.num_processes)

    @property
    def needs_weight_sync(self) -> bool:
        """True when the engine holds its own weights (vLLM), which the trainer must push after updates."""
        return bool(self.backend.needs_weight_sync)

    def sampling(self) -> SamplingParams:
        r = self.cfg.rollout
        return SamplingParams(num_samples=r.group_size, temperature=r.temperature, top_p=r.top_p, top_k=r.top_k,
                              max_new_tokens=r.max_new_tokens, stop_strings=list(r.stop_strings),
                              return_logprobs=True)

    def generation_weights(self, model: torch.nn.Module) -> contextlib.AbstractContextManager:
        """Whole weights for HF generate (gathered under FSDP2); a vLLM engine holds its own copy."""
        return contextlib.nullcontext() if self.needs_weight_sync else self.parallel.gathered(model)

    def generation_autocast(self) -> contextlib.AbstractContextManager:
        """HF generate under ``trainer.mixed_precision`` (``rollout.mixed_precision``); never a vLLM engine,
        which runs in its own dtype (``rollout.vllm.dtype``) and must not see the trainer's autocast."""
        if self.needs_weight_sync or not self.cfg.rollout.mixed_precision:
            return contextlib.nullcontext()
        return self.accelerator.autocast()

    def generate(self, n_prompts: int, model: torch.nn.Module) -> Rollout:
        """The next ``n_prompts`` global prompts (this rank's share), ``group_size`` samples each."""
        records = [self.dataset[i] for i in self.sampler.take(n_prompts)]
        batch = self.collator(records)
        with self.generation_autocast(), self.generation_weights(model):
            return self.backend.generate(self.accelerator.unwrap_model(model), batch, self.sampling())

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Push ``model``'s weights into the engine; a no-op for HF. Every rank calls it (FSDP2 gathers)."""
        if self.needs_weight_sync:
            unwrapped = self.accelerator.unwrap_model(model)
            needed = iter_full_weights(model, keep=sync_filter(unwrapped))
            self.backend.sync_weights(engine_weights(needed, unwrapped))

    def close(self) -> None:
        """Stop the rollout engine (a vLLM engine shuts down its worker and process groups); HF: nothing."""
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    def state(self) -> dict[str, int]:
        """What a checkpoint keeps to resume the prompt order."""
        return {"data_position": self.sampler.position}

    def load_state(self, state: dict[str, Any]) -> None:
        self.sampler.position = int(state["data_position"])
