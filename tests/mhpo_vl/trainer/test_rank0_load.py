"""FSDP2 with several processes: only rank 0 reads the weights; the other ranks build the model on the meta
device and receive rank 0's weights while sharding (2 CPU gloo ranks)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from mhpo_vl.config import LoraConfig, ModelConfig
from mhpo_vl.models import load_policy
from mhpo_vl.trainer.parallel import Parallel, iter_full_weights, tied_duplicates
from tests.mhpo_vl.trainer.distributed import run_ranks


def _parallel(rank: int, world: int) -> Parallel:
    process = SimpleNamespace(num_processes=world, process_index=rank, is_main_process=rank == 0,
                              device=torch.device("cpu"), mixed_precision="no")  # this rank of the gloo group
    return Parallel("fsdp2", process)


def test_on_meta_builds_the_same_model_without_reading_weights(tiny_model_dir):
    for arch, lora in (("qwen2_5_vl", False), ("qwen2", True)):
        cfg = ModelConfig(name_or_path=str(tiny_model_dir(arch)), lora=LoraConfig(enabled=lora, r=4), dtype="auto")
        real, meta = load_policy(cfg), load_policy(cfg, on_meta=True)
        assert all(t.is_meta for t in meta.state_dict().values())
        assert [(n, p.shape, p.dtype, p.requires_grad) for n, p in meta.named_parameters()] == [
            (n, p.shape, p.dtype, p.requires_grad) for n, p in real.named_parameters()]
        assert list(meta.state_dict()) == list(real.state_dict()) and meta.training == real.training
        assert tied_duplicates(meta) == tied_duplicates(real)


def _non_persistent_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    persistent = set(model.state_dict())
    return {n: b for n, b in model.named_buffers() if n not in persistent}


def _check_rank0_load(rank: int, world: int, model_dir: str, lora: bool, out: str) -> None:
    cfg = ModelConfig(name_or_path=model_dir, lora=LoraConfig(enabled=lora, r=4))
    parallel = _parallel(rank, world)
    assert parallel.builds_on_meta == (rank > 0)
    torch.manual_seed(0)  # the same LoRA initialisation for rank 0's model and every rank's reference
    model = load_policy(cfg, on_meta=parallel.builds_on_meta)
    if rank > 0:
        assert all(t.is_meta for t in model.state_dict().values()), "ranks > 0 read no weights"
    else:
        with torch.no_grad():  # rank 0's weights differ from the files (as after loading a checkpoint to resume)
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.01)
    torch.manual_seed(0)
    expected = load_policy(cfg)  # a normal load on this rank, moved like rank 0's
    with torch.no_grad():
        for p in expected.parameters():
            if p.requires_grad:
                p.add_(0.01)
    trainable = {n for n, p in expected.named_parameters() if p.requires_grad}

    model = parallel.wrap(model)
    got_trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert got_trainable == trainable, (sorted(got_trainable - trainable)[:3], sorted(trainable - got_trainable)[:3])
    assert tied_duplicates(model) == tied_duplicates(expected), "tied weights must stay tied"
    full = dict(iter_full_weights(model))
    reference = expected.state_dict()
    assert list(full) == list(reference)
    for name, tensor in reference.items():
        assert torch.equal(full[name], tensor), name
    buffers = _non_persistent_buffers(model)
    assert buffers.keys() == _non_persistent_buffers(expected).keys() and buffers
    for name, tensor in _non_persistent_buffers(expected).items():
        assert not buffers[name].is_meta and torch.equal(buffers[name], tensor), name

    assert model.training == expected.training
    model.eval(), expected.eval()  # no LoRA dropout
    ids = torch.tensor([[5, 17, 42, 9, 33, 7]])  # FSDP2 forward: every rank runs it
    with torch.no_grad():
        got, want = model(input_ids=ids).logits, expected(input_ids=ids).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    Path(out, f"rank{rank}").write_text("ok")


def test_rank0_load_gives_every_rank_rank0_weights(tiny_model_dir, tmp_path):
    run_ranks(_check_rank0_load, str(tiny_model_dir("qwen2_5_vl")), False, str(tmp_path), timeout=180)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0", "rank1"]


def test_rank0_load_with_lora(tiny_model_dir, tmp_path):
    run_ranks(_check_rank0_load, str(tiny_model_dir("qwen2")), True, str(tmp_path), timeout=180)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0", "rank1"]
