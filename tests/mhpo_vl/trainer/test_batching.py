import pytest
import torch

from mhpo_vl.errors import UserError
from mhpo_vl.rollout.types import Rollout
from mhpo_vl.trainer.batching import PromptSampler, concat_rollouts, require_even_split, select_groups


def test_sampler_is_seeded_epoch_wise_and_resumable():
    a = PromptSampler(10, seed=3)
    first_epoch = a.take(10)
    assert sorted(first_epoch) == list(range(10))
    second = a.take(10)
    assert sorted(second) == list(range(10)) and second != first_epoch
    b = PromptSampler(10, seed=3)
    b.position = 10
    assert b.take(10) == second


def test_sampler_shards_ranks_disjointly():
    full = PromptSampler(12, seed=0).take(8)
    r0 = PromptSampler(12, seed=0, rank=0, world=2).take(8)
    r1 = PromptSampler(12, seed=0, rank=1, world=2).take(8)
    assert sorted(r0 + r1) == sorted(full) and not set(r0) & set(r1)


def _rollout(prompt_len: int, resp_len: int, groups: int, g: int = 2, start: int = 0) -> Rollout:
    n = groups * g
    ids = torch.arange(start, start + groups * prompt_len).view(groups, prompt_len)
    return Rollout(
        prompt_inputs={"input_ids": ids, "attention_mask": torch.ones_like(ids)},
        response_ids=torch.arange(n * resp_len).view(n, resp_len), response_mask=torch.ones(n, resp_len, dtype=torch.long),
        texts=[f"t{start}-{i}" for i in range(n)], group_size=g, truncated=torch.zeros(n, dtype=torch.bool),
        logprobs=torch.zeros(n, resp_len), records=[{"id": f"{start}-{p}"} for p in range(groups)],
    )


def test_require_even_split_names_the_key():
    require_even_split(8, 2, "rollout.prompts_per_step")
    require_even_split(3, 1, "sft.batch_size")
    with pytest.raises(UserError, match=r"sft.batch_size \(1\) must be a multiple of the number of processes \(2\)"):
        require_even_split(1, 2, "sft.batch_size")


def test_select_groups_and_concat_pad_correctly():
    a = _rollout(3, 2, groups=3)
    kept = select_groups(a, [0, 2], vision_start_id=None)
    assert kept.prompt_inputs["input_ids"].tolist() == [[0, 1, 2], [6, 7, 8]]
    assert kept.texts == ["t0-0", "t0-1", "t0-4", "t0-5"]
    assert [r["id"] for r in kept.records] == ["0-0", "0-2"]
    b = _rollout(5, 4, groups=1, start=100)
    both = concat_rollouts([kept, b], pad_id=-1)
    assert both.prompt_inputs["input_ids"].shape == (3, 5)
    assert both.prompt_inputs["input_ids"][0].tolist() == [-1, -1, 0, 1, 2]  # prompts left-padded
    assert both.prompt_inputs["attention_mask"][0].tolist() == [0, 0, 1, 1, 1]
    assert both.response_ids.shape == (6, 4) and both.response_mask[0].tolist() == [1, 1, 0, 0]
    assert len(both.texts) == 6 and both.logprobs.shape == (6, 4)
