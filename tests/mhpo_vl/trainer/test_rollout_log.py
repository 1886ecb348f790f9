"""Rollout log: the step_N.jsonl schema, per-token values, token strings, images, gating by step and rank."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer

from mhpo_vl.algos import token_weights
from mhpo_vl.config import config_from_dict
from mhpo_vl.rollout.types import Rollout
from mhpo_vl.trainer.rollout_log import (
    RolloutLogger,
    TokenRecorder,
    rollout_logger_for,
    step_file,
    token_strings,
)

TEXTS = ["<answer>red</answer>", "héllo 世界 ✓", "<script>alert(1)</script>", "a", "b c", "é"]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir("qwen2_5_vl"))


def _rollout(tokenizer, data_dir: Path, g: int = 3) -> Rollout:
    ids = [tokenizer.encode(t, add_special_tokens=False) + [tokenizer.eos_token_id] for t in TEXTS]
    t_max = max(map(len, ids))
    pad = tokenizer.pad_token_id or 0
    response_ids = torch.tensor([row + [pad] * (t_max - len(row)) for row in ids])
    mask = torch.tensor([[1] * len(row) + [0] * (t_max - len(row)) for row in ids])
    Image.new("RGB", (40, 30), "red").save(data_dir / "img.png")
    (data_dir.parent / "secret.png").write_bytes((data_dir / "img.png").read_bytes())
    records = [
        {"id": "p0", "prompt": "What <b>colour</b>?", "answer": "red", "answer_type": "choice", "images": ["img.png"],
         "image_root": str(data_dir)},
        {"id": "p1", "prompt": "2+2?", "answer": "4", "images": ["../secret.png"], "image_root": str(data_dir)},
    ]
    return Rollout(prompt_inputs={}, response_ids=response_ids, response_mask=mask, texts=list(TEXTS), group_size=g,
                   truncated=torch.tensor([False, True, False, False, False, True]),
                   logprobs=-torch.rand(len(TEXTS), t_max), records=records)


def _log_one_step(tokenizer, tmp_path, per_step=2, algo="mhpo"):
    data = tmp_path / "data"
    data.mkdir()
    rollout = _rollout(tokenizer, data)
    n, t = rollout.response_ids.shape
    logger = RolloutLogger(tmp_path / "run", every=2, per_step=per_step, tokenizer=tokenizer, algo=algo,
                           hparams={"agg": "seq-mean-token-mean"})
    assert logger.recorder(1, rollout) is None  # not a logged step
    recorder = logger.recorder(2, rollout)
    torch.manual_seed(0)
    logp = rollout.logprobs + 0.1 * torch.randn(n, t)
    entropy = torch.rand(n, t)
    for rows in (slice(0, 4), slice(4, 6)):  # two micro-batches, as policy_update calls the sink
        recorder(rows, logp[rows], entropy[rows])
    advantages = torch.tensor([1.0, -0.5, -0.5, 0.3, 0.0, -0.3])
    logger.submit(recorder, rollout, rewards=torch.tensor([1.0, 0.0, 0.0, 0.5, 0.2, 0.1]),
                  components={"accuracy": [1.0, 0, 0, 1, 0, 0], "format_reward": [1.0, 0, 0, 0, 1, 0]},
                  accuracy=[1.0, 0.0, 0.0, 1.0, 0.0, 0.0], advantages=advantages, old_logp=rollout.logprobs)
    logger.close()
    return rollout, logp, entropy, advantages, logger


def test_step_file_schema_and_per_token_values(tokenizer, tmp_path):
    rollout, logp, entropy, adv, logger = _log_one_step(tokenizer, tmp_path)
    path = step_file(tmp_path / "run", 2)
    assert logger.written == [path] and logger.failures == 0
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["p0", "p1"]
    first = lines[0]
    assert {"schema", "step", "id", "prompt", "answer", "answer_type", "images", "responses"} <= set(first)
    assert first["step"] == 2 and first["prompt"] == "What <b>colour</b>?" and first["answer"] == "red"
    assert len(first["responses"]) == 3
    mask = rollout.response_mask.bool()
    weights = token_weights("mhpo", logp, rollout.logprobs, adv, mask)
    for p, line in enumerate(lines):
        for j, r in enumerate(line["responses"]):
            k = p * 3 + j
            n = int(mask[k].sum())
            assert r["index"] == j and r["text"] == TEXTS[k] and r["length"] == n
            assert r["truncated"] == bool(rollout.truncated[k]) and r["correct"] == (k in (0, 3))
            assert r["advantage"] == pytest.approx(float(adv[k]), abs=1e-4)
            assert set(r["components"]) == {"accuracy", "format_reward"}
            for key in ("tokens", "logp", "log_ratio", "weight", "entropy"):
                assert len(r[key]) == n, key
            assert r["logp"] == pytest.approx(logp[k, :n].tolist(), abs=1e-4)
            assert r["log_ratio"] == pytest.approx((logp[k, :n] - rollout.logprobs[k, :n]).tolist(), abs=2e-4)
            assert r["weight"] == pytest.approx(weights[k, :n].tolist(), abs=1e-4)
            assert r["entropy"] == pytest.approx(entropy[k, :n].tolist(), abs=1e-4)
    meta = json.loads((tmp_path / "run" / "rollouts" / "meta.json").read_text())
    assert meta["algo"] == "mhpo" and meta["weight_kind"] == "exp(psi - zeta)" and meta["group_size"] == 3


def test_images_are_copied_as_thumbnails_and_never_from_outside_the_data_dir(tokenizer, tmp_path):
    _log_one_step(tokenizer, tmp_path)
    lines = [json.loads(x) for x in step_file(tmp_path / "run", 2).read_text().splitlines()]
    inside = lines[0]["images"][0]
    assert inside["path"] == "img.png" and (tmp_path / "run" / "rollouts" / "images" / inside["file"]).is_file()
    outside = lines[1]["images"][0]
    assert "file" not in outside and "outside the data directory" in outside["error"]
    assert len(list((tmp_path / "run" / "rollouts" / "images").iterdir())) == 1


def test_fewer_prompts_than_asked_and_clip_mask_weights(tokenizer, tmp_path):
    _log_one_step(tokenizer, tmp_path, per_step=5, algo="grpo")
    lines = step_file(tmp_path / "run", 2).read_text().splitlines()
    assert len(lines) == 2  # the batch had only 2 prompts
    weights = {w for line in lines for r in json.loads(line)["responses"] for w in r["weight"]}
    assert weights <= {0.0, 1.0}


@pytest.mark.parametrize("text", TEXTS + ["naïve café\n\ttabs", "🙂🙃 emoji", ""])
def test_token_strings_join_to_the_decoded_text(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
    pieces = token_strings(tokenizer, ids)
    assert len(pieces) == len(ids)
    assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=False)


def test_recorder_keeps_the_last_pass_per_row():
    rec = TokenRecorder(step=1, rows=[0, 1])
    rec(slice(0, 2), torch.zeros(2, 3), None)
    rec(slice(0, 2), torch.ones(2, 3), torch.ones(2, 3))  # a later PPO epoch
    rec(slice(2, 4), torch.full((2, 3), 5.0), None)  # rows not logged
    assert torch.equal(rec.logp[0], torch.ones(3)) and set(rec.logp) == {0, 1}


def test_logger_only_on_rank_zero_and_when_enabled(tokenizer, tmp_path):
    def cfg(**logging):
        return config_from_dict({"logging": logging})

    assert rollout_logger_for(cfg(), tmp_path, tokenizer, {}, is_main=True).every == 10  # the default is on
    assert rollout_logger_for(cfg(rollouts_every=1), tmp_path, tokenizer, {}, is_main=False) is None
    assert rollout_logger_for(cfg(rollouts_every=0), tmp_path, tokenizer, {}, is_main=True) is None
    with pytest.raises(ValueError, match="logging.rollouts_per_step"):
        cfg(rollouts_per_step=0)
