import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import get_cosine_schedule_with_warmup

from eval.preflight import check_vllm_model
from mhpo_vl.config import LoraConfig, ModelConfig
from mhpo_vl.errors import UserError
from mhpo_vl.models import load_policy
from mhpo_vl.trainer.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    legacy_weight_strays,
    load_checkpoint,
    read_trainer_state,
    restore_rng_state,
    save_checkpoint,
)


def _setup(model_dir: Path, **model_kwargs):
    model = load_policy(ModelConfig(name_or_path=str(model_dir), **model_kwargs))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.01)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=2, num_training_steps=10)
    return model, opt, sched


def _train(model, opt, sched, steps: int) -> None:
    """A few optimizer steps on random token ids drawn from the global torch RNG."""
    for _ in range(steps):
        ids = torch.randint(20, 200, (2, 8))
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()


def _params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def _save(run_dir, step, model, opt=None, sched=None, keep_last=3, **state):
    return save_checkpoint(run_dir, step, model=model, optimizer=opt, scheduler=sched,
                           state={"step": step, **state}, keep_last=keep_last)


def test_full_model_round_trip_continues_exactly(tmp_path, tiny_model_dir):
    """Resuming from a checkpoint reproduces the uninterrupted run: weights, AdamW moments, LR, RNG."""
    torch.manual_seed(0)
    model, opt, sched = _setup(tiny_model_dir("qwen2"))
    _train(model, opt, sched, 2)
    ckpt = _save(tmp_path, 2, model, opt, sched, data_position=32, metrics={"reward": float("nan")})
    assert ckpt == tmp_path / "checkpoints" / "step_2"
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "trainer_state" / "optimizer.pt").is_file()
    draws = _draws()
    _train(model, opt, sched, 2)
    expected, expected_lr = _params(model), sched.get_last_lr()

    torch.manual_seed(123)  # a fresh process: different RNG, initial weights, empty optimizer
    model2, opt2, sched2 = _setup(tiny_model_dir("qwen2"))
    state = load_checkpoint(ckpt, model=model2, optimizer=opt2, scheduler=sched2)
    assert state["data_position"] == 32 and state["step"] == 2
    assert draws == _draws(), "RNG draws after restore must equal those after save"
    _train(model2, opt2, sched2, 2)
    _assert_same(expected, _params(model2))
    assert sched2.get_last_lr() == expected_lr


def test_vlm_full_model_round_trip(tmp_path, tiny_model_dir):
    """Qwen2.5-VL saves renamed keys (model.layers.* vs model.language_model.*): loading maps them back."""
    model = load_policy(ModelConfig(name_or_path=str(tiny_model_dir("qwen2_5_vl"))))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    saved = _params(model)
    ckpt = _save(tmp_path, 1, model)
    fresh = load_policy(ModelConfig(name_or_path=str(tiny_model_dir("qwen2_5_vl"))))
    assert not torch.equal(next(fresh.parameters()), next(model.parameters()))
    load_checkpoint(ckpt, model=fresh, optimizer=None, scheduler=None)
    _assert_same(saved, _params(fresh))


def test_peft_round_trip_saves_adapter_only(tmp_path, tiny_model_dir):
    lora = LoraConfig(enabled=True, r=4, alpha=8)
    torch.manual_seed(0)
    model, opt, sched = _setup(tiny_model_dir("qwen2"), lora=lora)
    _train(model, opt, sched, 2)
    ckpt = _save(tmp_path, 2, model, opt, sched)
    assert (ckpt / "adapter_model.safetensors").is_file()
    assert not (ckpt / "model.safetensors").exists(), "LoRA checkpoints hold the adapter only"
    _train(model, opt, sched, 1)
    expected = _params(model)

    fresh, opt2, sched2 = _setup(tiny_model_dir("qwen2"), lora=lora)
    load_checkpoint(ckpt, model=fresh, optimizer=opt2, scheduler=sched2)
    _train(fresh, opt2, sched2, 1)
    _assert_same(expected, _params(fresh))


def test_peft_with_trainable_vision_tower_keeps_its_weights(tmp_path, tiny_model_dir):
    kwargs = {"lora": LoraConfig(enabled=True, r=4), "freeze_vision_tower": False}
    model = load_policy(ModelConfig(name_or_path=str(tiny_model_dir("qwen2_5_vl")), **kwargs))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05)
    saved = _params(model)
    ckpt = _save(tmp_path, 1, model)
    assert (ckpt / "extra_trainable.safetensors").is_file()
    fresh = load_policy(ModelConfig(name_or_path=str(tiny_model_dir("qwen2_5_vl")), **kwargs))
    load_checkpoint(ckpt, model=fresh, optimizer=None, scheduler=None)
    _assert_same(saved, _params(fresh))


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, tiny_model_dir, monkeypatch):
    model, opt, sched = _setup(tiny_model_dir("qwen2"))
    first = _save(tmp_path, 1, model, opt, sched)
    real_save = model.save_pretrained

    def save_then_die(directory, **kwargs):
        real_save(directory, **kwargs)
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(model, "save_pretrained", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 2, model, opt, sched)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step_1"], "no half-written dir may remain"
    assert latest_checkpoint(tmp_path) == first
    assert load_checkpoint(first, model=model, optimizer=opt, scheduler=sched)["step"] == 1


def test_leftovers_of_a_killed_save_are_ignored_then_removed(tmp_path, tiny_model_dir):
    model = load_policy(ModelConfig(name_or_path=str(tiny_model_dir("qwen2"))))
    first = _save(tmp_path, 1, model)
    root = tmp_path / "checkpoints"
    (root / ".tmp_step_2_99999").mkdir()
    (root / ".tmp_step_2_99999" / "model.safetensors").write_bytes(b"partial")
    (root / "step_3" / "trainer_state").mkdir(parents=True)  # no state.json: never complete
    assert latest_checkpoint(tmp_path) == first
    _save(tmp_path, 4, model)
    assert sorted(p.name for p in root.iterdir()) == ["step_1", "step_4"]


def test_keep_last_prunes_oldest_and_drops_abandoned_later_steps(tmp_path, tiny_model_dir):
    model = load_policy(ModelConfig(name_or_path=str(tiny_model_dir("qwen2"))))
    root = tmp_path / "checkpoints"
    for step in range(1, 6):
        _save(tmp_path, step, model, keep_last=2)
    assert sorted(p.name for p in root.iterdir()) == ["step_4", "step_5"]
    assert latest_checkpoint(tmp_path) == root / "step_5"
    # A run resumed from step 4 writes step 5 again, then step 5 replaces the old one; with keep_last=1
    # only the newest stays.
    _save(tmp_path, 5, model, keep_last=1, marker="second")
    assert sorted(p.name for p in root.iterdir()) == ["step_5"]
    assert read_trainer_state(root / "step_5")["marker"] == "second"
    _save(tmp_path, 3, model, keep_last=2)  # resumed from an earlier step: step_5 is another timeline
    assert sorted(p.name for p in root.iterdir()) == ["step_3"]


def test_latest_checkpoint_without_checkpoints(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    assert latest_checkpoint(tmp_path) is None


def test_state_must_be_json(tmp_path, tiny_model_dir):
    model = load_policy(ModelConfig(name_or_path=str(tiny_model_dir("qwen2"))))
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path, 1, model=model, optimizer=None, scheduler=None,
                        state={"x": object()}, keep_last=1)
    assert not (tmp_path / "checkpoints" / "step_1").exists()


class _NotATensor:
    pass


@pytest.mark.parametrize("damage", ["missing_dir", "bad_state", "truncated_optimizer", "pickled_object",
                                    "missing_rng", "adapter_into_full_model"])
def test_corrupt_checkpoints_raise_user_errors_naming_the_path(damage, tmp_path, tiny_model_dir):
    model, opt, sched = _setup(tiny_model_dir("qwen2"))
    ckpt = _save(tmp_path, 1, model, opt, sched)
    target = ckpt
    if damage == "missing_dir":
        target = ckpt.with_name("step_9")
    elif damage == "bad_state":
        target = ckpt / "trainer_state" / "state.json"
        target.write_text('{"step": 1, "sta')
    elif damage == "truncated_optimizer":
        target = ckpt / "trainer_state" / "optimizer.pt"
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "pickled_object":
        target = ckpt / "trainer_state" / "optimizer.pt"
        torch.save({"state": _NotATensor()}, target)  # arbitrary objects are never unpickled
    elif damage == "missing_rng":
        target = ckpt / "trainer_state" / "rng_state.json"
        target.unlink()
    elif damage == "adapter_into_full_model":
        lora_model = load_policy(ModelConfig(name_or_path=str(tiny_model_dir("qwen2")),
                                             lora=LoraConfig(enabled=True, r=4)))
        ckpt = _save(tmp_path / "lora", 1, lora_model)
        target = ckpt
    with pytest.raises(UserError) as info:
        load_checkpoint(ckpt if damage != "missing_dir" else target, model=model, optimizer=opt, scheduler=sched)
    assert str(target) in str(info.value)


def test_rng_capture_restore():
    torch.manual_seed(5)
    state = capture_rng_state()
    first = _draws()
    random.seed(99)
    np.random.seed(99)
    restore_rng_state(state)
    assert _draws() == first


def test_trainer_state_file_is_plain_json(tmp_path, tiny_model_dir):
    model = load_policy(ModelConfig(name_or_path=str(tiny_model_dir("qwen2"))))
    ckpt = _save(tmp_path, 7, model, epoch=1, consecutive_bad_steps=0)
    doc = json.loads((ckpt / "trainer_state" / "state.json").read_text())
    assert doc["step"] == 7 and doc["state"] == {"step": 7, "epoch": 1, "consecutive_bad_steps": 0}
    rng = json.loads((ckpt / "trainer_state" / "rng_state.json").read_text())
    assert len(rng["python"]["state"]) == 625 and len(rng["numpy"]["key"]) == 624


def test_model_folder_holds_only_the_model(tmp_path, tiny_model_dir):
    """Weight loaders (vLLM, ``vllm serve``) take every ``*.safetensors`` of a model folder as weights: the
    RNG tensors, optimizer and scheduler live in ``trainer_state/``, out of that pattern."""
    model, opt, sched = _setup(tiny_model_dir("qwen2"))
    _train(model, opt, sched, 1)
    ckpt = _save(tmp_path, 1, model, opt, sched)
    assert sorted(p.name for p in ckpt.glob("*.safetensors")) == ["model.safetensors"]
    assert not list(ckpt.glob("*.pt")) and not (ckpt / "trainer_state.json").exists()
    assert sorted(p.name for p in (ckpt / "trainer_state").iterdir()) == [
        "optimizer.pt", "rng_state.json", "rng_state.safetensors", "scheduler.pt", "state.json"]
    assert json.loads((ckpt / "trainer_state" / "state.json").read_text())["format_version"] == 3
    assert legacy_weight_strays(ckpt) == [] and legacy_weight_strays(tiny_model_dir("qwen2")) == []


def _to_old_layout(ckpt: Path) -> None:
    """Rewrite a checkpoint into the format-2 layout (commit 8187b36): trainer files beside the model's,
    ``trainer_state.json`` as the completeness marker."""
    folder = ckpt / "trainer_state"
    for item in folder.iterdir():
        item.rename(ckpt / ("trainer_state.json" if item.name == "state.json" else item.name))
    folder.rmdir()
    doc = json.loads((ckpt / "trainer_state.json").read_text())
    (ckpt / "trainer_state.json").write_text(json.dumps({**doc, "format_version": 2}))


def test_old_layout_checkpoint_still_resumes_exactly(tmp_path, tiny_model_dir):
    torch.manual_seed(0)
    model, opt, sched = _setup(tiny_model_dir("qwen2"))
    _train(model, opt, sched, 2)
    ckpt = _save(tmp_path, 2, model, opt, sched, data_position=16)
    _to_old_layout(ckpt)
    draws = _draws()
    _train(model, opt, sched, 2)
    expected, expected_lr = _params(model), sched.get_last_lr()

    assert latest_checkpoint(tmp_path) == ckpt
    assert legacy_weight_strays(ckpt) == ["rng_state.safetensors"]
    with pytest.raises(UserError, match="old layout.*rng_state.safetensors.*--backend hf"):
        check_vllm_model(str(ckpt))  # `mhpo-eval run --backend vllm`: one clear line, not vLLM's KeyError
    torch.manual_seed(123)
    model2, opt2, sched2 = _setup(tiny_model_dir("qwen2"))
    state = load_checkpoint(ckpt, model=model2, optimizer=opt2, scheduler=sched2)
    assert state["data_position"] == 16 and read_trainer_state(ckpt)["step"] == 2
    assert draws == _draws()
    _train(model2, opt2, sched2, 2)
    _assert_same(expected, _params(model2))
    assert sched2.get_last_lr() == expected_lr
    # A new save beside it counts the old-layout checkpoint as complete (kept, not pruned as a leftover).
    _save(tmp_path, 3, model2, opt2, sched2, keep_last=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_2", "step_3"]
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step_3"
