"""How the vLLM engine is built and fed, without vLLM: executor choice per process count, the engine's
``LLM`` kwargs, tensor parallelism refused, and the weight stream (the engine itself: test_vllm*.py)."""

from __future__ import annotations

import pytest
import torch

from mhpo_vl.config import ConfigError, VLLMConfig, config_from_dict
from mhpo_vl.errors import UserError
from mhpo_vl.rollout.vllm import WeightStream
from mhpo_vl.rollout.vllm_engine import engine_kwargs, executor_kwargs

LAUNCHED = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def test_one_process_keeps_vllms_own_executor():
    assert executor_kwargs({}) == {}
    assert executor_kwargs({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}) == {}


def test_several_processes_build_each_ranks_engine_with_the_external_launcher():
    assert executor_kwargs(LAUNCHED) == {"distributed_executor_backend": "external_launcher"}


@pytest.mark.parametrize("missing", ["LOCAL_RANK", "RANK"])
def test_several_processes_without_a_rank_variable_fail_with_one_clear_line(missing):
    env = {k: v for k, v in LAUNCHED.items() if k != missing}
    with pytest.raises(UserError, match=f"rollout.backend=vllm with WORLD_SIZE=2: {missing} not set") as err:
        executor_kwargs(env)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("on_gpu", [False, True])
def test_engine_kwargs_carry_the_executor_and_never_a_tensor_parallel_size(tiny_model_dir, on_gpu):
    path = str(tiny_model_dir("qwen2"))
    common = dict(max_model_len=128, seed=3, dtype="auto", multimodal=False, on_gpu=on_gpu, sleep=on_gpu)
    several = engine_kwargs(path, VLLMConfig(), env=LAUNCHED, **common)
    one = engine_kwargs(path, VLLMConfig(), env={}, **common)
    assert several["distributed_executor_backend"] == "external_launcher"
    assert "distributed_executor_backend" not in one
    assert "tensor_parallel_size" not in several and "tensor_parallel_size" not in one
    assert one["dtype"] == "float32"  # the checkpoint's, as the trainer loads it
    assert ("enable_sleep_mode" in one) == on_gpu  # vLLM refuses sleep mode on CPU


def test_tensor_parallel_engines_are_refused_with_the_reason():
    assert config_from_dict({}, ["rollout.vllm.tensor_parallel_size=1"]).rollout.vllm.tensor_parallel_size == 1
    with pytest.raises(ConfigError, match=r"rollout\.vllm\.tensor_parallel_size: must be 1, got 2: .*own GPU.*"
                                          r"identical prompts and seeds.*7B"):
        config_from_dict({}, ["rollout.vllm.tensor_parallel_size=2"])


def test_weight_stream_casts_floating_tensors_to_the_engine_dtype_one_at_a_time():
    source = [("a", torch.ones(2, requires_grad=True)), ("b", torch.arange(3)), ("c", torch.ones(1))]
    stream = WeightStream(iter(source), torch.bfloat16)
    name, first = next(stream)
    assert (name, first.dtype, first.requires_grad, stream.sent) == ("a", torch.bfloat16, False, 1)
    name, second = next(stream)
    assert (name, second.dtype) == ("b", torch.int64)  # integer buffers keep their dtype
    assert stream.drain() == 1 and stream.sent == 2
    same = WeightStream([("w", source[2][1])], torch.float32)
    assert next(same)[1].data_ptr() == source[2][1].data_ptr()  # no copy when the dtype already matches


def test_cpu_kv_cache_space_is_whole_gib_as_vllm_reads_it():
    assert config_from_dict({}, ["rollout.vllm.cpu_kvcache_space_gb=2"]).rollout.vllm.cpu_kvcache_space_gb == 2
    with pytest.raises(ConfigError, match=r"rollout\.vllm\.cpu_kvcache_space_gb: must be a whole number of GiB"):
        config_from_dict({}, ["rollout.vllm.cpu_kvcache_space_gb=0.5"])
