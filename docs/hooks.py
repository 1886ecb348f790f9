"""MkDocs hooks for the mhpo-vl site (named in mkdocs.yml; excluded from the built site).

- ``on_page_markdown``: fills the generated blocks of a page, written in the Markdown source as
  ``<!-- generated: NAME -->`` ... ``<!-- /generated -->`` (what stands between is what GitHub shows in
  their place): ``config-reference`` is the reference generated from ``mhpo_vl/config.py``
  (``scripts/gen_config_reference.py``), ``benchmarks`` one section per ``eval/benchmarks/*.yaml``,
  ``loss-defaults`` every policy loss's hyperparameters. So these pages are built from the code and
  cannot drift from it.

The API pages' docstrings go through ``docs/griffe_markdown.py`` (a griffe extension named in mkdocs.yml).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _generator() -> Any:
    """scripts/gen_config_reference.py as a module (scripts/ is no package)."""
    name = "gen_config_reference"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


GENERATED = re.compile(r"<!-- generated: ([a-z-]+) -->\n.*?<!-- /generated -->", re.S)


def benchmarks_table() -> str:
    """One section per shipped benchmark definition: what it is, its data, samples, protocol and differences."""
    import yaml

    gen = _generator()
    out: list[str] = []
    for path in sorted((ROOT / "eval" / "benchmarks").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        hub = spec.get("hub") or {}
        data = f"`{hub['id']}`, split `{hub.get('split', '')}`" if hub.get("id") else "prepared or generated here"
        if spec.get("licence"):
            data += f"; licence: {gen.escape(str(spec['licence']))}"
        protocol = spec.get("protocol") or {}
        out += [f"### `{spec['name']}`", "", gen.escape(spec.get("description", "")), "",
                f"- data: {data}",
                f"- samples: k = {spec.get('n_samples', 1)} at temperature {spec.get('temperature', 0.0)}",
                f"- headline `accuracy` follows: {gen.escape(protocol.get('source', ''))}",
                f"- our differences: {gen.escape(protocol.get('differences', 'none'))}",
                f"- definition: `eval/benchmarks/{path.name}`", ""]
    return "\n".join(out)


def loss_defaults_table() -> str:
    """One row per registered policy loss: its keyword hyperparameters with their defaults."""
    _generator()._import_config()
    from mhpo_vl.algos import POLICY_LOSSES, loss_defaults
    from mhpo_vl.config import AlgoConfig

    keys = {f.name for f in dataclasses.fields(AlgoConfig)}
    rows = ["| loss | `algo.*` keys it takes, with its defaults |", "|---|---|"]
    for name in POLICY_LOSSES:
        pairs = ", ".join(f"`{key}: {json.dumps(value)}`" for key, value in loss_defaults(name).items() if key in keys)
        rows.append(f"| `{name}` | {pairs} |")
    return "\n".join(rows) + "\n"


GENERATORS = {
    "config-reference": lambda: _generator().render(),
    "benchmarks": benchmarks_table,
    "loss-defaults": loss_defaults_table,
}


def generated(name: str) -> str:
    """The Markdown of generated block ``name`` (one of :data:`GENERATORS`)."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generated block {name!r} (known: {', '.join(GENERATORS)})")
    return GENERATORS[name]()


def fill(markdown: str) -> str:
    """``markdown`` with every generated block replaced by its content."""
    return GENERATED.sub(lambda m: generated(m.group(1)), markdown)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Fill in the generated blocks of a page."""
    return fill(markdown)
