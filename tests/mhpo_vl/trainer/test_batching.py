from types import SimpleNamespace

import pytest
import torch

from mhpo_vl.errors import UserError
from mhpo_vl.rollout.types import Rollout
from mhpo_vl.trainer.batching import (
    PromptSampler,
    concat_rollouts,
    mini_batch_count,
    mini_batch_slices,
    require_even_split,
    require_mini_batch_split,
    select_groups,
)


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


def _cfg(prompts: int, group: int, mini: int) -> SimpleNamespace:
    return SimpleNamespace(rollout=SimpleNamespace(prompts_per_step=prompts, group_size=group),
                           algo=SimpleNamespace(mini_batch_size=mini))


def test_mini_batch_count_is_global_batch_over_global_mini_batch():
    assert mini_batch_count(_cfg(32, 8, 64)) == 4  # the 7B recipe: 256 rows, 4 optimizer steps, any world
    assert mini_batch_count(_cfg(32, 8, 0)) == 1 and mini_batch_count(_cfg(32, 8, 256)) == 1


def test_mini_batch_slices_cover_the_rows_in_count_near_equal_parts():
    assert mini_batch_slices(32, 4) == [slice(0, 8), slice(8, 16), slice(16, 24), slice(24, 32)]  # 256 / 8 ranks
    assert mini_batch_slices(32, 1) == [slice(0, 32)]
    # dynamic sampling may keep more or fewer rows than configured: still `count` steps, sizes within one row
    for n, count in ((36, 4), (10, 4), (3, 4), (1, 1)):
        parts = mini_batch_slices(n, count)
        assert len(parts) == min(n, count) and parts[0].start == 0 and parts[-1].stop == n
        assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))
        assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1
        assert min(p.stop - p.start for p in parts) >= 1


def test_each_ranks_mini_batch_is_its_share_of_the_one_process_mini_batch():
    """Rank r holds global prompts r, r + world, ...: with mini_batch_size a multiple of world * group_size,
    mini-batch k of all ranks together holds exactly the prompts of a one-process run's mini-batch k."""
    prompts, group, mini, world = 8, 2, 4, 2
    count = mini_batch_count(_cfg(prompts, group, mini))
    one = PromptSampler(16, seed=1).take(prompts)
    shares = [PromptSampler(16, seed=1, rank=r, world=world).take(prompts) for r in range(world)]
    for k in range(count):
        ref = mini_batch_slices(prompts * group, count)[k]
        want = {one[row // group] for row in range(ref.start, ref.stop)}
        got = set()
        for share in shares:
            rows = mini_batch_slices(len(share) * group, count)[k]
            assert rows.stop - rows.start == mini // world
            got |= {share[row // group] for row in range(rows.start, rows.stop)}
        assert got == want


def test_require_mini_batch_split_names_the_key():
    require_mini_batch_split(0, 8)
    require_mini_batch_split(64, 8)
    with pytest.raises(UserError, match=r"algo.mini_batch_size \(6\) must be a multiple of the number of processes \(4\)"):
        require_mini_batch_split(6, 4)
