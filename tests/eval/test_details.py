"""``mhpo-eval list --details NAME`` and the protocol named by every shipped definition."""

from __future__ import annotations

import subprocess
import sys

import pytest

from eval.__main__ import main
from eval.details import describe
from eval.protocols import PROTOCOLS
from eval.registry import get_benchmark, load_spec_file, shipped_benchmarks


def test_list_details_wemath_shows_source_metrics_template_and_k():
    proc = subprocess.run([sys.executable, "-m", "eval", "list", "--details", "wemath"], capture_output=True,
                          text=True, check=True)
    out = proc.stdout
    for text in ("We-Math/We-Math evaluation/four_dimensional_metrics.py", "IK, IG, CM_strict, CM_loose",
                 "RM_strict", "score_strict", "template    wemath", "<Answer>: <<your option>>", "k=1",
                 "extraction", "scoring", "ID/key"):
        assert text in out, text


@pytest.mark.parametrize("name", sorted(shipped_benchmarks()))
def test_every_shipped_benchmark_names_its_protocol_source(name):
    spec = load_spec_file(shipped_benchmarks()[name])
    assert spec.protocol.name in PROTOCOLS and spec.protocol.source
    text = describe(spec)
    assert spec.protocol.source.split()[0] in text and "template" in text and "cannot read" not in text


def test_official_protocols_for_the_published_benchmarks():
    names = {n: get_benchmark(n).protocol.name for n in ("mathvista", "mathvision", "mathverse", "wemath", "gsm8k")}
    assert names == {"mathvista": "mathvista", "mathvision": "mathvision", "mathverse": "mathverse",
                     "wemath": "wemath", "gsm8k": "gsm8k_exact"}


def test_details_of_an_unknown_benchmark_is_a_one_line_error(capsys):
    assert main(["list", "--details", "nope"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
