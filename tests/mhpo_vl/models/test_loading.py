import pytest
import torch

from mhpo_vl.config import LoraConfig, ModelConfig
from mhpo_vl.errors import UserError
from mhpo_vl.models import is_vision_param, load_policy, trainable_parameters


def _train_one_step(model):
    ids = torch.randint(20, 200, (2, 8))
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss
    loss.backward()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    opt.step()


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen2"])
def test_lora_trains_only_adapters(arch, tiny_model_dir):
    cfg = ModelConfig(name_or_path=str(tiny_model_dir(arch)), lora=LoraConfig(enabled=True, r=4, alpha=8))
    model = load_policy(cfg)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert not any(is_vision_param(n) for n in names), "vision tower must stay frozen by default"
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train_one_step(model)
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        if "lora_B" in n:
            assert changed, n
        if "lora_" not in n:
            assert not changed, f"base weight {n} changed"


def test_full_finetune_freezes_vision_tower_by_default(tiny_model_dir):
    model = load_policy(ModelConfig(name_or_path=str(tiny_model_dir("qwen2_5_vl"))))
    vision = [p.requires_grad for n, p in model.named_parameters() if is_vision_param(n)]
    assert vision and not any(vision)
    trainable, total = trainable_parameters(model)
    assert 0 < trainable < total
    model = load_policy(ModelConfig(name_or_path=str(tiny_model_dir("qwen2_5_vl")), freeze_vision_tower=False))
    assert trainable_parameters(model)[0] == trainable_parameters(model)[1]


def test_lora_with_trainable_vision_tower(tiny_model_dir):
    cfg = ModelConfig(name_or_path=str(tiny_model_dir("qwen2_5_vl")), freeze_vision_tower=False,
                      lora=LoraConfig(enabled=True, r=4))
    model = load_policy(cfg)
    assert any(is_vision_param(n) and p.requires_grad for n, p in model.named_parameters())


def test_dtype_and_missing_path(tiny_model_dir, tmp_path):
    model = load_policy(ModelConfig(name_or_path=str(tiny_model_dir("qwen2")), dtype="bfloat16"))
    assert next(model.parameters()).dtype == torch.bfloat16
    with pytest.raises(UserError, match="cannot load model config"):
        load_policy(ModelConfig(name_or_path=str(tmp_path / "nothing")))
    with pytest.raises(UserError, match="name_or_path is empty"):
        load_policy(ModelConfig())


def test_bad_lora_target_is_user_error(tiny_model_dir):
    cfg = ModelConfig(name_or_path=str(tiny_model_dir("qwen2")), lora=LoraConfig(enabled=True, target_modules=["nosuch"]))
    with pytest.raises(UserError, match="target_modules"):
        load_policy(cfg)


def test_gradient_checkpointing_trains(tiny_model_dir):
    model = load_policy(ModelConfig(name_or_path=str(tiny_model_dir("qwen2_5_vl")), gradient_checkpointing=True))
    assert model.config.use_cache is False
    model.train()
    _train_one_step(model)
    assert any(p.grad is not None for p in model.parameters() if p.requires_grad)
