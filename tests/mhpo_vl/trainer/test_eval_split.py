"""The periodic eval split across ranks: each rank generates its share, every rank gets the metrics of all
records, equal to a 1-process eval (FSDP2 on 2 CPU gloo ranks, HF generate under gathered weights)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from mhpo_vl.config import Config, config_from_dict
from mhpo_vl.evaluation import PAD_ID_SUFFIX, evaluate, rank_share
from mhpo_vl.models import load_policy, load_processor
from tests.mhpo_vl.trainer.distributed import run_ranks

N_RECORDS = 7  # odd: one rank's share is topped up with a filler record


def test_rank_share_deals_every_record_once_in_equal_sized_shares():
    records = [{"id": f"r{i}", "prompt": "p" * (i % 4), "images": ["x"] * (i % 2)} for i in range(11)]
    for world in (1, 2, 3, 4, 16):
        shares = [rank_share(records, rank, world) for rank in range(world)]
        real = [r["id"] for share, n in shares for r in share[:n]]
        assert sorted(real) == sorted(r["id"] for r in records), world
        assert {len(share) for share, _ in shares} == {-(-len(records) // world)}, world
        assert all(PAD_ID_SUFFIX in r["id"] for share, n in shares for r in share[n:])
        assert all(len({r["id"] for r in share}) == len(share) for share, _ in shares), "ids unique in a share"
    assert rank_share([], 0, 2) == ([], 0)
    with pytest.raises(ValueError, match="rank 2"):
        rank_share(records, 2, 2)


class CountingBackend:
    """The HF backend, recording the ids of the prompts it generated for (to see each rank's share)."""

    def __init__(self, processor: Any) -> None:
        from mhpo_vl.rollout import HFRolloutBackend

        self.inner, self.ids = HFRolloutBackend(processor), []
        self.needs_weight_sync = False

    def generate(self, model: torch.nn.Module, batch: Any, params: Any) -> Any:
        self.ids.extend(r["id"] for r in batch.records)
        return self.inner.generate(model, batch, params)


def _cfg(model_dir: str, eval_dir: str) -> Config:
    return config_from_dict({
        "model": {"name_or_path": model_dir, "min_pixels": 3136, "max_pixels": 3136},
        "data": {"train_dir": eval_dir, "eval_dir": eval_dir, "eval_split": "test", "prompt_template": "plain",
                 "max_prompt_tokens": 64},
        "rollout": {"prompts_per_step": 2, "group_size": 2, "max_new_tokens": 4, "eval_batch_size": 2},
        "reward": {"extract": "full_text"},
        "trainer": {"output_dir": str(Path(eval_dir) / "run"), "mixed_precision": "no"},
    })


def _eval_on_rank(rank: int, world: int, model_dir: str, eval_dir: str, records_file: str, out: str) -> None:
    from mhpo_vl.trainer.parallel import Parallel, apply_fsdp2
    from mhpo_vl.trainer.setup import run_eval

    cfg = _cfg(model_dir, eval_dir)
    records = json.loads(Path(records_file).read_text())
    processor = load_processor(cfg.model)
    model = apply_fsdp2(load_policy(cfg.model))
    process = SimpleNamespace(num_processes=world, process_index=rank, is_main_process=rank == 0,
                              device=torch.device("cpu"))  # the rank's place in the real gloo group
    parallel = Parallel("fsdp2", process)
    backend = CountingBackend(processor)
    with parallel.gathered(model):
        metrics = run_eval(model, processor, records, cfg, backend=backend, parallel=parallel)
    Path(out, f"rank{rank}.json").write_text(json.dumps({"metrics": metrics, "generated": backend.ids}))


def test_two_ranks_split_the_eval_and_agree_with_one_process(tiny_model_dir, tmp_path):
    from mhpo_vl.data import PromptDataset
    from mhpo_vl.trainer.setup import run_eval

    data = tmp_path / "easy_vqa"
    subprocess.run([sys.executable, "-m", "data_prep", "synthetic", "--task", "easy_vqa", "--image-size", "56",
                    "--n", str(N_RECORDS), "--split", "test", "--output", str(data)], check=True, capture_output=True)
    cfg = _cfg(str(tiny_model_dir("qwen2_5_vl")), str(data))
    records = PromptDataset(cfg.data.eval_dir, cfg.data.eval_split).records
    processor, model = load_processor(cfg.model), load_policy(cfg.model)
    # Answers that the untrained model gets right on every other record, so the accuracy counts something.
    greedy, _ = evaluate(model, processor, records, max_new_tokens=4, batch_size=2, template="plain",
                         max_prompt_tokens=64, extract="full_text", progress=False)
    records = [{**r, "answer_type": "text", "answer": s["response"] if i % 2 == 0 else "no such answer"}
               for i, (r, s) in enumerate(zip(records, greedy))]
    expected = run_eval(model, processor, records, cfg)
    assert expected["n"] == N_RECORDS and 0.4 < expected["accuracy"] < 0.6

    records_file = tmp_path / "records.json"
    records_file.write_text(json.dumps(records, default=str))
    run_ranks(_eval_on_rank, cfg.model.name_or_path, str(data), str(records_file), str(tmp_path), timeout=240)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank in ranks:
        assert rank["metrics"] == expected, "every rank reports the metrics of all records"
    generated = [rank["generated"] for rank in ranks]
    assert [len(g) for g in generated] == [4, 4], "equal shares (one filler), not the whole eval on each rank"
    real = [i for g in generated for i in g if PAD_ID_SUFFIX not in i]
    assert sorted(real) == sorted(r["id"] for r in records), "every record evaluated exactly once"
