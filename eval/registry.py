"""Benchmark registry: declarative benchmark definitions read from YAML.

A definition says where the data comes from (a local copy in its published layout, the HF hub, or a
generator), how a row maps to a prepared record (id, prompt, answer, images, choices), the answer type
(which verifier scores it) and the default sampling settings. The shipped ones live in
``eval/benchmarks/*.yaml``; a user adds one by passing a YAML file path.

    spec = get_benchmark("gsm8k")             # shipped
    spec = get_benchmark("my_bench.yaml")     # a user's file
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from eval.protocols import PROTOCOLS, ProtocolRef
from mhpo_vl.config import build_dataclass  # strict YAML -> dataclass (unknown keys named, with suggestions)
from mhpo_vl.errors import ConfigError, UserError

BENCHMARK_DIR = Path(__file__).resolve().parent / "benchmarks"
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
ANSWER_TYPES = ("math", "choice", "numeric", "bbox", "text")
SOURCES = ("files", "reasoning_gym")

Candidates = Union[str, list[str]]


@dataclass
class HubSource:
    """Where ``datasets.load_dataset`` finds the benchmark (used only without a local copy)."""

    id: str = ""
    config: Optional[str] = None
    split: str = "test"


@dataclass
class FieldMap:
    """Column names of the published data. Each entry may list candidates: the first present wins.

    Dotted names reach into nested structs (``metadata.category``). An empty ``id`` means the
    0-based row index (as a string) is the id.
    """

    id: Candidates = field(default_factory=list)
    prompt: Candidates = field(default_factory=lambda: ["problem", "question", "prompt"])
    answer: Candidates = field(default_factory=lambda: ["answer"])
    images: Candidates = field(default_factory=list)
    choices: Candidates = field(default_factory=list)


@dataclass
class AnswerTypeRule:
    """A constant answer type, or one read from a column (optionally mapped through ``map``)."""

    map: dict[str, str] = field(default_factory=dict)  # declared before ``field``, which shadows it here
    value: Optional[str] = None
    field: Optional[str] = None


@dataclass
class ReasoningGymSource:
    """A reasoning-gym task generated on the fly (deterministic for a fixed seed and size)."""

    dataset: str = "basic_arithmetic"
    seed: int = 42
    size: int = 100
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchmarkSpec:
    """One benchmark definition (the YAML keys, with their defaults)."""

    name: str = ""
    description: str = ""
    source: str = "files"
    hub: Optional[HubSource] = None
    files: list[str] = field(default_factory=list)
    dir_names: list[str] = field(default_factory=list)
    fields: FieldMap = field(default_factory=FieldMap)
    prompt_format: Optional[str] = None
    answer_type: Union[str, dict[str, Any]] = "math"
    adapter: Optional[str] = None
    append_choices: bool = True
    answer_patterns: list[str] = field(default_factory=list)
    subsets: list[str] = field(default_factory=list)
    meta: list[str] = field(default_factory=list)
    reasoning_gym: Optional[ReasoningGymSource] = None
    protocol: ProtocolRef = field(default_factory=ProtocolRef)  # published scoring rules (eval/protocols)
    template: Optional[str] = None  # a name in mhpo_vl/templates or eval/templates, or a .txt file
    n_samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 1024
    licence: str = ""
    path: str = ""

    def answer_rule(self) -> AnswerTypeRule:
        """The answer-type rule, whichever YAML form (a name or a mapping) was used."""
        if isinstance(self.answer_type, str):
            return AnswerTypeRule(value=self.answer_type)
        return build_dataclass(AnswerTypeRule, self.answer_type, "answer_type")

    def validate(self) -> None:
        where = self.path or self.name
        if not self.name:
            raise ConfigError(f"{where}: 'name' is required")
        if self.source not in SOURCES:
            raise ConfigError(f"{where}: source: must be one of {', '.join(SOURCES)}")
        if self.source == "files" and not self.files and self.hub is None:
            raise ConfigError(f"{where}: files: give file patterns (or a hub source)")
        if self.source == "reasoning_gym" and self.reasoning_gym is None:
            raise ConfigError(f"{where}: reasoning_gym: required when source is reasoning_gym")
        rule = self.answer_rule()
        if rule.value is None and rule.field is None:
            raise ConfigError(f"{where}: answer_type: give a type name or a mapping with 'field'")
        for name in [rule.value, *rule.map.values()]:
            if name is not None and name not in ANSWER_TYPES:
                raise ConfigError(f"{where}: answer_type: {name!r} is not one of {', '.join(ANSWER_TYPES)}")
        for pattern in self.answer_patterns:
            try:
                if re.compile(pattern).groups != 1:
                    raise re.error("needs exactly one capture group")
            except re.error as exc:
                raise ConfigError(f"{where}: answer_patterns: bad regex {pattern!r} ({exc})") from None
        if self.n_samples < 1:
            raise ConfigError(f"{where}: n_samples: must be >= 1")
        if self.temperature < 0:
            raise ConfigError(f"{where}: temperature: must be >= 0")
        if self.max_new_tokens < 1:
            raise ConfigError(f"{where}: max_new_tokens: must be >= 1")
        if self.protocol.name not in PROTOCOLS:
            raise ConfigError(f"{where}: protocol.name: unknown {self.protocol.name!r}; "
                              f"known: {', '.join(sorted(PROTOCOLS))}")
        if self.adapter is not None:
            from eval.adapters import ADAPTERS

            if self.adapter not in ADAPTERS:
                raise ConfigError(f"{where}: adapter: unknown {self.adapter!r}; known: {', '.join(sorted(ADAPTERS))}")


def resolve_template(name: str) -> str:
    """A template name from ``eval/templates`` as its file path; anything else is returned as is
    (a name in ``mhpo_vl/templates`` or a user's file, resolved by the collator)."""
    shipped = TEMPLATE_DIR / f"{name}.txt"
    return str(shipped) if "/" not in name and shipped.is_file() else name


def candidates(value: Candidates) -> list[str]:
    """A field entry as a list of candidate column names."""
    return [value] if isinstance(value, str) else list(value)


def load_spec_file(path: str | Path) -> BenchmarkSpec:
    """Read and validate one benchmark YAML file; errors name the file (and line for bad YAML)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"benchmark file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a benchmark definition must be a mapping")
    data.setdefault("name", path.stem)
    try:
        spec = build_dataclass(BenchmarkSpec, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    spec.path = str(path)
    spec.validate()
    return spec


def shipped_benchmarks() -> dict[str, Path]:
    """Names of the shipped definitions -> their YAML files."""
    return {p.stem: p for p in sorted(BENCHMARK_DIR.glob("*.yaml"))}


def _looks_like_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or "/" in name or Path(name).is_file()


def get_benchmark(name: str, extra: dict[str, BenchmarkSpec] | None = None) -> BenchmarkSpec:
    """A benchmark by shipped name, by a name defined in ``extra`` (user files), or by YAML path."""
    if extra and name in extra:
        return extra[name]
    if _looks_like_path(name):
        return load_spec_file(name)
    shipped = shipped_benchmarks()
    if name in shipped:
        return load_spec_file(shipped[name])
    known = sorted(set(shipped) | set(extra or {}))
    raise UserError(f"unknown benchmark {name!r}; known: {', '.join(known)} (or pass a YAML file path)")


def load_user_files(paths: list[str]) -> dict[str, BenchmarkSpec]:
    """User benchmark files (``--benchmark-file``), keyed by their ``name``."""
    specs = [load_spec_file(p) for p in paths]
    return {s.name: s for s in specs}


def parse_benchmark_list(text: str) -> list[str]:
    """``"a,b, c.yaml"`` -> ``["a", "b", "c.yaml"]``; empty entries are an error."""
    names = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not n for n in names):
        raise UserError(f"--benchmarks: expected a comma-separated list of names, got {text!r}")
    return names
