"""Collector: rewards from the real verifiers, dynamic sampling's drop-and-refill, its bounds and fallbacks."""

from __future__ import annotations

import pytest
import torch

from mhpo_vl.config import config_from_dict
from mhpo_vl.rewards import combine
from mhpo_vl.rollout.types import Rollout
from mhpo_vl.trainer.collect import Collector
from mhpo_vl.trainer.parallel import Parallel
from mhpo_vl.trainer.reward_faults import RewardFaults
from mhpo_vl.trainer.setup import make_accelerator

G = 2
PAD = 0
RIGHT, WRONG = "<answer>red</answer>", "<answer>blue</answer>"
# group kinds: both right / both wrong have zero reward variance; mixed groups carry a signal
KINDS = {"right": (RIGHT, RIGHT), "wrong": (WRONG, WRONG), "mixed": (RIGHT, WRONG)}


class Prompts:
    """``generate(n)`` for the collector: the next n groups of a fixed script, with the counts asked for."""

    def __init__(self, kinds: list[str]) -> None:
        self.kinds, self.asked, self.next = kinds, [], 0

    def __call__(self, n: int) -> Rollout:
        self.asked.append(n)
        kinds = [self.kinds[(self.next + p) % len(self.kinds)] for p in range(n)]
        ids = [f"p{self.next + p}" for p in range(n)]
        self.next += n
        texts = [t for k in kinds for t in KINDS[k]]
        length = torch.tensor([p + 2 for p in range(n)])  # prompts of different lengths, left-padded
        prompt = (torch.arange(length.max()) >= length.max() - length[:, None]).long()
        return Rollout(prompt_inputs={"input_ids": prompt * 5, "attention_mask": prompt},
                       response_ids=torch.full((n * G, 3), 7), response_mask=torch.ones(n * G, 3, dtype=torch.long),
                       texts=texts, group_size=G, truncated=torch.zeros(n * G, dtype=torch.bool),
                       logprobs=torch.zeros(n * G, 3), records=[{"id": i, "answer": "red"} for i in ids])


def _collector(dynamic: bool, components: dict[str, float] | None = None, max_tries: int = 3,
               accuracy=None) -> Collector:
    cfg = config_from_dict({
        "rollout": {"prompts_per_step": 4, "group_size": G},
        "algo": {"dynamic_sampling": dynamic, "dynamic_sampling_max_tries": max_tries},
        "reward": {"components": components or {"accuracy": 1.0}},
    })
    reward = combine(cfg.reward.components)
    parallel = Parallel("ddp", make_accelerator("no"))
    return Collector(cfg, reward, RewardFaults(reward.names), accuracy, parallel, PAD, vision_start_id=None)


def test_without_dynamic_sampling_the_first_batch_is_returned_scored():
    prompts = Prompts(["right", "wrong", "mixed", "mixed"])
    out = _collector(dynamic=False).collect(prompts)
    assert prompts.asked == [4]
    assert len(out.rollout) == 4 * G and [r["id"] for r in out.rollout.records] == ["p0", "p1", "p2", "p3"]
    assert out.rewards.tolist() == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert out.components == {"accuracy": out.rewards.tolist()} and out.accuracy == out.rewards.tolist()
    assert out.timing["dynamic_sampling/dropped_groups"] == 0.0 and out.timing["time/rollout"] >= 0.0


def test_dynamic_sampling_drops_zero_variance_groups_and_refills():
    prompts = Prompts(["right", "mixed", "wrong", "mixed", "mixed"])
    out = _collector(dynamic=True).collect(prompts)
    # p0..p3 keep p1, p3; 2 more: p4 (mixed) p5 (right); 1 more: p6 (mixed) -> 4 groups
    assert prompts.asked == [4, 2, 1]
    assert [r["id"] for r in out.rollout.records] == ["p1", "p3", "p4", "p6"]
    assert out.rewards.tolist() == [1.0, 0.0] * 4 and out.accuracy == out.rewards.tolist()
    assert out.components["accuracy"] == out.rewards.tolist()
    assert out.timing["dynamic_sampling/dropped_groups"] == 3.0 and "dynamic_sampling/no_signal" not in out.timing
    assert out.rollout.texts == [RIGHT, WRONG] * 4
    ids = out.rollout.prompt_inputs["input_ids"]  # batches joined, left-padded to the longest prompt (p3)
    assert ids.shape == (4, 5) and ids[0].tolist() == [PAD, PAD, 5, 5, 5]  # p1: 3 tokens
    assert out.rollout.response_ids.shape == (4 * G, 3)


def test_dynamic_sampling_stops_after_max_tries_with_what_it_has():
    prompts = Prompts(["mixed", "right", "right", "wrong"])
    out = _collector(dynamic=True, max_tries=2).collect(prompts)
    assert prompts.asked == [4, 3]  # one group kept per batch of 4, then the tries run out
    assert [r["id"] for r in out.rollout.records] == ["p0", "p4"]
    assert out.timing["dynamic_sampling/dropped_groups"] == 5.0


def test_no_group_with_a_signal_trains_on_the_last_batch():
    prompts = Prompts(["right", "wrong"])
    out = _collector(dynamic=True, max_tries=2).collect(prompts)
    assert prompts.asked == [4, 4]
    assert [r["id"] for r in out.rollout.records] == ["p4", "p5", "p6", "p7"]
    assert out.timing["dynamic_sampling/no_signal"] == 1.0 and out.timing["dynamic_sampling/dropped_groups"] == 8.0


@pytest.mark.parametrize("separate", [False, True], ids=["from-reward", "own-scorer"])
def test_accuracy_comes_from_its_own_scorer_when_the_reward_has_none(separate):
    components = {"format_reward": 1.0} if separate else {"accuracy": 0.5, "format_reward": 0.5}
    collector = _collector(dynamic=False, components=components,
                           accuracy=combine({"accuracy": 1.0}) if separate else None)
    rewards, parts, accuracy = collector.score(Prompts(["mixed", "right"])(2))
    assert accuracy == [1.0, 0.0, 1.0, 1.0]
    assert set(parts) == set(components) and len(rewards) == 4
    assert collector.reward_faults.samples == 4


class RankPrompts(Prompts):
    """A rank's ``generate(n)``: n is the global prompt count, this rank samples its share, n // world."""

    def __init__(self, kinds: list[str], rank: int, world: int) -> None:
        super().__init__(kinds)
        self.rank, self.world = rank, world

    def __call__(self, n: int) -> Rollout:
        out = super().__call__(n // self.world)
        self.asked[-1] = n
        for record in out.records:
            record["id"] = f"r{self.rank}{record['id']}"
        return out


def _collect_on_two_ranks(rank: int, world: int) -> None:
    from types import SimpleNamespace

    cfg = config_from_dict({"rollout": {"prompts_per_step": 4, "group_size": G},
                            "algo": {"dynamic_sampling": True, "dynamic_sampling_max_tries": 3}})
    reward = combine({"accuracy": 1.0})
    process = SimpleNamespace(num_processes=world, process_index=rank, is_main_process=rank == 0,
                              device=torch.device("cpu"))  # the rank's place in the real gloo group
    collector = Collector(cfg, reward, RewardFaults(reward.names), None, Parallel("ddp", process), PAD, None)
    # rank 0 finds a signal in every group, rank 1 in one: 3 + 1 groups reach the 4 wanted after 2 tries
    prompts = RankPrompts(["mixed"] if rank == 0 else ["mixed", "right", "right"], rank, world)
    out = collector.collect(prompts)
    assert prompts.asked == [4, 2], "every rank asks for the same global counts"
    assert [r["id"] for r in out.rollout.records] == [f"r{rank}p0"], "both ranks keep min(3, 1) = 1 group"
    assert len(out.rollout) == G and out.rewards.tolist() == [1.0, 0.0]
    assert out.timing["dynamic_sampling/dropped_groups"] == (0.0 if rank == 0 else 2.0)


def test_dynamic_sampling_keeps_the_same_group_count_on_every_rank():
    from tests.mhpo_vl.trainer.distributed import run_ranks

    run_ranks(_collect_on_two_ranks, timeout=180)
