"""mhpo_vl.trainer.parallel: full weights under 1 process and FSDP2 on 2 CPU ranks (gloo)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mhpo_vl.trainer.parallel import iter_full_weights, unwrap
from tests.mhpo_vl.trainer.distributed import run_ranks


def _load(model_dir: Path) -> torch.nn.Module:
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(str(model_dir), dtype=torch.float32)


def test_iter_full_weights_one_process(tiny_model_dir):
    model = _load(tiny_model_dir("qwen2_5_vl"))
    expected = model.state_dict()
    got = list(iter_full_weights(model))
    assert [n for n, _ in got] == list(expected)
    assert all(torch.equal(t, expected[n]) for n, t in got)
    ddp_like = torch.nn.parallel.DistributedDataParallel.__new__(torch.nn.parallel.DistributedDataParallel)
    torch.nn.Module.__init__(ddp_like)
    ddp_like.module = model
    assert unwrap(ddp_like) is model


def _fsdp2_weights(rank: int, world: int, model_dir: str, out: str) -> None:
    from torch.distributed.tensor import DTensor

    from mhpo_vl.trainer.parallel import apply_fsdp2, fsdp_modules, tied_duplicates

    model = apply_fsdp2(_load(Path(model_dir)))
    assert tied_duplicates(model) == ["lm_head.weight"], "sharding untied the embeddings"
    sharded = [n for n, p in model.named_parameters() if isinstance(p, DTensor)]
    assert sharded, "FSDP2 left every parameter unsharded"
    assert len(fsdp_modules(model)) >= 4  # 2 decoder layers, 1 vision block, the tower, the root
    local = sum(p.to_local().numel() for p in model.parameters())
    full = {}
    for name, tensor in iter_full_weights(model):
        assert not isinstance(tensor, DTensor)
        full[name] = tensor.clone()
    if rank == 0:
        reference = _load(Path(model_dir)).state_dict()
        assert list(full) == list(reference)
        assert all(torch.equal(full[n], reference[n]) for n in reference)
        assert local < sum(t.numel() for t in reference.values() if t.is_floating_point()) * 0.75
        Path(out).write_text("ok")


def test_iter_full_weights_fsdp2_two_ranks(tiny_model_dir, tmp_path):
    run_ranks(_fsdp2_weights, str(tiny_model_dir("qwen2_5_vl")), str(tmp_path / "ok"), timeout=120)
    assert (tmp_path / "ok").read_text() == "ok"


def test_optimizer_state_by_name_round_trip_and_legacy_integer_keys():
    from mhpo_vl.trainer.parallel import by_index, by_name, named_optimizer_state, optimizer_param_names

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    names = optimizer_param_names(model, opt)
    assert names == ["0.bias", "1.weight", "1.bias"]
    named = named_optimizer_state(model, opt)
    assert set(named["state"]) == set(names) and named["param_groups"][0]["params"] == names
    legacy = opt.state_dict()  # format-1 checkpoints: integer keys
    assert by_name(legacy, names)["state"].keys() == named["state"].keys()
    assert by_name(named, names) == named
    fresh = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    fresh.load_state_dict(by_index(named, names))
    assert torch.equal(fresh.state_dict()["state"][1]["exp_avg"], legacy["state"][1]["exp_avg"])
    with pytest.raises(ValueError, match="does not train"):
        by_index({"state": {}, "param_groups": [{"params": ["0.weight"]}]}, names)


def test_fsdp_cpu_offload_needs_fsdp2():
    from mhpo_vl.config import ConfigError, config_from_dict

    assert config_from_dict({"trainer": {"strategy": "fsdp2", "fsdp_cpu_offload": True}}).trainer.fsdp_cpu_offload
    with pytest.raises(ConfigError, match="trainer.fsdp_cpu_offload"):
        config_from_dict({"trainer": {"fsdp_cpu_offload": True}})
    with pytest.raises(ConfigError, match="trainer.strategy"):
        config_from_dict({"trainer": {"strategy": "zero3"}})


# ----------------------------------------------------------------------------- gradient clipping


@pytest.mark.parametrize("max_norm", [0.0, 1e-3, 0.5, 1e6])
def test_clip_grad_norm_equals_torch_on_plain_tensors(max_norm):
    """Plain (DDP / one-process) gradients of mixed shapes: the norm and the clipped gradients are torch's."""
    from mhpo_vl.trainer.parallel import clip_grad_norm

    gen = torch.Generator().manual_seed(0)
    shapes = [(7, 5), (5,), (3, 4, 2), (1,)]
    ours = [torch.nn.Parameter(torch.zeros(s)) for s in shapes] + [torch.nn.Parameter(torch.zeros(2))]
    theirs = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    for a, b in zip(ours, theirs):
        a.grad = torch.randn(b.shape, generator=gen)
        b.grad = a.grad.clone()
    norm = clip_grad_norm(ours, max_norm)  # the last parameter has no gradient: ignored
    want = torch.nn.utils.clip_grad_norm_(theirs, max_norm if max_norm > 0 else float("inf"))
    assert norm.dim() == 0 and norm.dtype == torch.float32
    torch.testing.assert_close(norm, want, rtol=1e-6, atol=0)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-9)
    if max_norm == 1e-3:  # clipping applied: the new norm is max_norm
        assert float(norm) > 1.0
        clipped = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ours[:-1]]))
        assert float(clipped) == pytest.approx(1e-3, rel=1e-4)
    assert clip_grad_norm([torch.nn.Parameter(torch.zeros(2))], 1.0) == 0.0  # nothing to clip


@pytest.mark.parametrize(("backend", "data", "want"), [
    ("gloo", "cpu", "cpu"),
    ("nccl", "cpu", "cuda"),  # CPU-offloaded FSDP2 gradients under an NCCL-only group: reduce on the GPU
    ("nccl", "cuda:1", "cuda:1"),
    ("cpu:gloo,cuda:nccl", "cpu", "cpu"),  # a group with gloo for CPU: offloaded data stays on the CPU
    ("cpu:gloo,cuda:nccl", "cuda:0", "cuda:0"),
    ("cpu:gloo", "cuda:0", "cpu"),
])
def test_collective_device_follows_the_process_group_backend(backend, data, want):
    from mhpo_vl.trainer.parallel import collective_device

    got = collective_device(backend, torch.device(data))
    assert got.type == torch.device(want).type
    if torch.device(want).index is not None:
        assert got == torch.device(want)


def _lm_loss(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of ``ids`` (B, T) under ``model``, a mean over the B * (T - 1) tokens."""
    logits = model(input_ids=ids).logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def _offload_clip(rank: int, world: int, model_dir: str, out: str) -> None:
    """On each rank: the batch's share through FSDP2 with and without CPU offload, then clip_grad_norm;
    both against one unsharded model on the whole batch with torch.nn.utils.clip_grad_norm_."""
    from torch.distributed.tensor import DTensor

    from mhpo_vl.trainer.parallel import apply_fsdp2, clip_grad_norm, full_tensor

    max_norm = 0.05
    ids = torch.randint(0, 200, (4, 12), generator=torch.Generator().manual_seed(1))
    reference = _load(Path(model_dir))
    _lm_loss(reference, ids).backward()
    params = [p for p in reference.parameters() if p.requires_grad]
    want = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    assert want > 10 * max_norm, "clipping must apply for this test to say anything"
    want_grads = {n: p.grad.clone() for n, p in reference.named_parameters() if p.grad is not None}
    norms = {}
    for offload in (False, True):
        model = apply_fsdp2(_load(Path(model_dir)), cpu_offload=offload)
        _lm_loss(model, ids[rank::world]).backward()  # FSDP2 averages the ranks' gradients: the batch mean
        params = [p for p in model.parameters() if p.requires_grad]
        assert all(isinstance(p.grad, DTensor) for p in params if p.grad is not None)
        norms[offload] = float(clip_grad_norm(params, max_norm))
        clipped = {n: full_tensor(p.grad) for n, p in model.named_parameters() if p.grad is not None}
        assert clipped.keys() == want_grads.keys()
        for name, grad in clipped.items():
            torch.testing.assert_close(grad, want_grads[name], rtol=1e-4, atol=1e-7, msg=name)
        after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in clipped.values()]))
        assert float(after) == pytest.approx(max_norm, rel=1e-4), "clipping did not apply"
    assert norms[True] == pytest.approx(norms[False], rel=1e-6)
    assert norms[False] == pytest.approx(want, rel=1e-5)
    if rank == 0:
        Path(out).write_text("ok")


def test_clip_grad_norm_under_fsdp2_cpu_offload_two_ranks(tiny_model_dir, tmp_path):
    """trainer.fsdp_cpu_offload with grad_clip: the same norm as without offload and as one process, and
    the clipped gradients are one process's clipped gradients."""
    run_ranks(_offload_clip, str(tiny_model_dir("qwen2_5_vl")), str(tmp_path / "ok"), timeout=180)
    assert (tmp_path / "ok").read_text() == "ok"


def _offload_clip_cuda(rank: int, world: int, model_dir: str, out: str) -> None:
    """FSDP2 on a CUDA mesh with CPU-offloaded shards: gradients are CPU DTensors, the group may be NCCL only."""
    import torch.distributed as dist

    from mhpo_vl.trainer.parallel import apply_fsdp2, clip_grad_norm, collective_device

    torch.cuda.set_device(rank)
    max_norm = 0.05
    ids = torch.randint(0, 200, (2, 12), generator=torch.Generator().manual_seed(1)).cuda()
    reference = _load(Path(model_dir)).cuda()
    _lm_loss(reference, ids).backward()
    want = float(torch.nn.utils.clip_grad_norm_([p for p in reference.parameters() if p.requires_grad], max_norm))
    model = apply_fsdp2(_load(Path(model_dir)), cpu_offload=True)
    _lm_loss(model, ids).backward()
    params = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad.device.type == "cpu" for p in params if p.grad is not None), "not offloaded"
    got = clip_grad_norm(params, max_norm)
    assert got.device == collective_device(dist.get_backend(), torch.device("cpu"))
    assert float(got) == pytest.approx(want, rel=1e-4)
    Path(out).write_text("ok")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (NCCL)")
@pytest.mark.parametrize("backend", ["nccl", "cpu:gloo,cuda:nccl"])
def test_clip_grad_norm_cpu_offload_on_a_cuda_mesh(tiny_model_dir, tmp_path, backend):
    """The GPU case the CPU tests cannot reach: an NCCL group cannot reduce the offloaded CPU shards' norm."""
    run_ranks(_offload_clip_cuda, str(tiny_model_dir("qwen2_5_vl")), str(tmp_path / "ok"), world=1, timeout=300,
              backend=backend)
    assert (tmp_path / "ok").read_text() == "ok"
