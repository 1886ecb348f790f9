"""scripts/bench_support.py: the bench's data and configs keep its images at their size on both sides."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def bench_support():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import bench_support

        yield bench_support
    finally:
        sys.path.remove(str(SCRIPTS))


def test_bench_images_reach_both_trainers_as_256_image_tokens(bench_support, tmp_path):
    from mhpo_vl.data import PromptCollator, PromptDataset
    from mhpo_vl.models import load_processor

    side = bench_support.IMAGE_SIDE
    recipe = str(bench_support.ROOT / "recipes" / "tiny_cpu_mhpo.yaml")
    model_dir, data_dir, params = bench_support.prepare(tmp_path, "tiny", side=side, n_data=4)
    assert params > 0
    cfg = bench_support.step_config(recipe, model_dir, data_dir, tmp_path, side=side, prompts=2, group=2,
                                    max_new_tokens=8)
    assert cfg.model.min_pixels == cfg.model.max_pixels == side * side
    records = PromptDataset(cfg.data.train_dir, cfg.data.train_split).records[:2]
    # mhpo-vl's collator (the recipe's own limits would shrink the images to 84 x 84 = 9 tokens)...
    ours = PromptCollator(load_processor(cfg.model), template=cfg.data.prompt_template,
                          min_pixels=cfg.model.min_pixels, max_pixels=cfg.model.max_pixels,
                          max_prompt_tokens=cfg.data.max_prompt_tokens)(records)
    tokens = (side // 28) ** 2
    assert ours.inputs["image_grid_thw"].prod(dim=1).tolist() == [tokens * 4] * 2  # patches = 4 per token
    # ...and TRL's processor (bench_support gives TRL load_processor(cfg.model) and the same images).
    rows = bench_support.trl_dataset(cfg)
    trl_inputs = load_processor(cfg.model).image_processor(images=[rows[0]["images"][0]], return_tensors="pt")
    assert trl_inputs["image_grid_thw"].prod(dim=1).tolist() == [tokens * 4]


def test_distributed_variables_set_by_a_peer_are_undone(bench_support, monkeypatch):
    """TRL's colocated mode exports RANK/WORLD_SIZE/...; trainers built after it must not see them (they
    would be wrapped in a one-process DistributedDataParallel), while values set before are kept."""
    import os

    monkeypatch.setenv("MASTER_PORT", "29999")
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError), bench_support.restored_distributed_env():
        os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "localhost",
                           "MASTER_PORT": "12345"})
        raise RuntimeError("the peer failed after exporting its variables")
    assert [os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR")] == [None] * 4
    assert os.environ["MASTER_PORT"] == "29999"
