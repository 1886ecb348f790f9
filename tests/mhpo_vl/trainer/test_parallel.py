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
