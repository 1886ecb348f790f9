"""One step's rollouts with their rewards; with ``algo.dynamic_sampling``, only groups with a reward signal."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

import torch

from mhpo_vl.config import Config
from mhpo_vl.rewards import CombinedReward
from mhpo_vl.rollout.types import Rollout
from mhpo_vl.trainer.batching import concat_rollouts, select_groups
from mhpo_vl.trainer.parallel import Parallel
from mhpo_vl.trainer.reward_faults import RewardFaults


class Collected(NamedTuple):
    rollout: Rollout
    rewards: torch.Tensor  # (N,) float32, N = groups * group_size
    components: dict[str, list[float]]  # per reward component, N values
    accuracy: list[float]  # N values
    timing: dict[str, float]  # time/rollout, time/reward, dynamic_sampling/*


class Collector:
    """Scores rollouts and, with dynamic sampling, drops zero-variance groups and refills (bounded tries).

    ``accuracy`` scores accuracy when ``reward`` has no accuracy component (None: read it from ``reward``).
    """

    def __init__(self, cfg: Config, reward: CombinedReward, reward_faults: RewardFaults,
                 accuracy: CombinedReward | None, parallel: Parallel, pad_id: int,
                 vision_start_id: int | None) -> None:
        self.cfg, self.reward, self.reward_faults, self.accuracy = cfg, reward, reward_faults, accuracy
        self.parallel, self.pad_id, self.vision_start_id = parallel, pad_id, vision_start_id

    def score(self, rollout: Rollout) -> tuple[torch.Tensor, dict[str, list[float]], list[float]]:
        """(rewards (N,), components, accuracy) of every sample; reward failures go to ``reward_faults``."""
        g = rollout.group_size
        lengths = rollout.response_lengths.tolist()
        references, fields = [], []
        for i in range(len(rollout)):
            record = rollout.records[i // g]
            references.append(record["answer"])
            extra = {k: record[k] for k in ("id", "prompt", "answer_type", "choices") if record.get(k) is not None}
            fields.append({**extra, "response_length": lengths[i], "extract": self.cfg.reward.extract})
        scores = self.reward(rollout.texts, references, fields)
        self.reward_faults.add(scores)
        if self.accuracy is None:
            accuracy = scores.components["accuracy"]
        else:
            accuracy = self.accuracy(rollout.texts, references, fields).total
        return torch.tensor(scores.total, dtype=torch.float32), scores.components, accuracy

    def collect(self, generate: Callable[[int], Rollout]) -> Collected:
        """``rollout.prompts_per_step`` groups from ``generate(n_prompts)`` (a global count), scored.

        Every rank keeps the same number of groups, so all ranks make the same forward calls afterwards.
        """
        cfg = self.cfg
        want = cfg.rollout.prompts_per_step
        timing = {"time/rollout": 0.0, "time/reward": 0.0}
        kept: list[tuple[Rollout, torch.Tensor, dict, list[float]]] = []
        world = self.parallel.world
        have, have_all, tries, dropped = 0, 0, 0, 0  # groups kept on this rank / on all ranks
        while True:
            t0 = time.perf_counter()
            # every rank asks for the same global count, so all ranks make the same generate calls
            rollout = generate(math.ceil((want - have_all) / world) * world)
            t1 = time.perf_counter()
            rewards, components, accuracy = self.score(rollout)
            timing["time/rollout"] += t1 - t0
            timing["time/reward"] += time.perf_counter() - t1
            tries += 1
            if not cfg.algo.dynamic_sampling:
                timing["dynamic_sampling/dropped_groups"] = 0.0
                return Collected(rollout, rewards, components, accuracy, timing)
            g = rollout.group_size
            groups = [p for p in range(len(rollout) // g) if rewards[p * g:(p + 1) * g].std() > 0]
            dropped += len(rollout) // g - len(groups)
            if groups:
                rows = [p * g + j for p in groups for j in range(g)]
                kept.append((select_groups(rollout, groups, self.vision_start_id), rewards[rows],
                             {k: [v[i] for i in rows] for k, v in components.items()}, [accuracy[i] for i in rows]))
                have += len(groups)
            have_all = int(self.parallel.sum(have))
            if have_all >= want or tries >= cfg.algo.dynamic_sampling_max_tries:
                break
        timing["dynamic_sampling/dropped_groups"] = float(dropped)
        keep = int(self.parallel.min(have))
        if keep == 0:  # some rank has no group with a reward signal: train on the last batch (zero advantages)
            timing["dynamic_sampling/no_signal"] = 1.0
            return Collected(rollout, rewards, components, accuracy, timing)
        rollout = concat_rollouts([k[0] for k in kept], self.pad_id)
        rewards = torch.cat([k[1] for k in kept])
        components = {key: [x for k in kept for x in k[2][key]] for key in kept[0][2]}
        accuracy = [x for k in kept for x in k[3]]
        if keep < have:
            rows = keep * rollout.group_size
            rollout = select_groups(rollout, list(range(keep)), self.vision_start_id)
            rewards, accuracy = rewards[:rows], accuracy[:rows]
            components = {key: v[:rows] for key, v in components.items()}
        return Collected(rollout, rewards, components, accuracy, timing)
