"""`make setup` on a CPU machine must not pull a CUDA build or torchvision (see README, Install)."""

from importlib import metadata

import pytest
import torch


@pytest.mark.skipif(torch.version.cuda is not None, reason="a CUDA torch was installed on purpose (TORCH=...)")
def test_cpu_setup_has_no_cuda_packages_and_no_torchvision():
    names = {(d.metadata["Name"] or "").lower() for d in metadata.distributions()}
    assert not {n for n in names if n.startswith("nvidia-")}, "a CUDA build of torch was pulled in"
    assert "torchvision" not in names, "torchvision breaks transformers' Qwen processors beside the CPU torch"
    assert "mhpo-vl" in names
