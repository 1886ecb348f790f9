"""mhpo-vl eval: text and vision-language reasoning benchmarks scored with deterministic verifiers.

``python -m eval run|score|compare|list`` (installed as ``mhpo-eval``). Benchmarks are YAML
definitions (``eval/benchmarks/*.yaml``); generation and scoring live in ``mhpo_vl.evaluation`` so
that the trainer's periodic evaluation runs the same code.
"""

from eval.loaders import load_records
from eval.registry import BenchmarkSpec, get_benchmark, load_spec_file, shipped_benchmarks

__all__ = ["BenchmarkSpec", "get_benchmark", "load_records", "load_spec_file", "shipped_benchmarks"]
