"""``mhpo-eval list --details NAME``: everything that decides a benchmark's number, in one page."""

from __future__ import annotations

import textwrap

from eval.loaders import subset_labels
from eval.protocols import get_protocol
from eval.registry import BenchmarkSpec, resolve_template
from eval.runner import DEFAULT_TEMPLATE

BASE_METRICS = ("accuracy (official-protocol verdicts, Avg@k)", "accuracy_strict (our verifiers)", "pass@k",
                "extraction_failure_rate", "mean_response_length")


def _template_text(name: str) -> str:
    """The template's text (read directly: the collator's loader would import torch)."""
    from importlib import resources
    from pathlib import Path

    path = Path(resolve_template(name))
    if path.suffix != ".txt" or not path.is_file():
        shipped = resources.files("mhpo_vl") / "templates" / f"{name}.txt"
        return shipped.read_text(encoding="utf-8").rstrip("\n") if shipped.is_file() else f"(no template {name!r})"
    return path.read_text(encoding="utf-8").rstrip("\n")


def _wrap(label: str, text: str) -> list[str]:
    return textwrap.wrap(text, width=100, initial_indent=f"{label:12s}", subsequent_indent=" " * 12) or [label]


def describe(spec: BenchmarkSpec) -> str:
    """A readable description of ``spec``: data, prompt, extraction, scoring, metrics, sampling, sources."""
    protocol = get_protocol(spec.protocol.name)
    template = spec.template or DEFAULT_TEMPLATE
    data = (f"hub {spec.hub.id}" + (f" ({spec.hub.config})" if spec.hub.config else "") + f" split {spec.hub.split}"
            if spec.hub else f"reasoning-gym {spec.reasoning_gym.dataset}" if spec.reasoning_gym else "local files")
    lines = [*textwrap.wrap(f"{spec.name}: {spec.description}", width=100), ""]
    lines += _wrap("data", f"{data}; local copy: --data-dir DIR with DIR/{spec.name}/ matching "
                           f"{', '.join(spec.files) or '-'}")
    lines += _wrap("ids", _ids(spec))
    lines += _wrap("template", f"{template} (override with --template)")
    lines += ["            | " + line for line in _template_text(template).splitlines()]
    lines += _wrap("extraction", protocol.extraction)
    lines += _wrap("scoring", f"{protocol.name}: {protocol.scoring}")
    lines += _wrap("metrics", ", ".join([*BASE_METRICS, *protocol.metric_names]
                                        + [f"by {s}" for s in subset_labels(spec.subsets)]))
    sampling = f"k={spec.n_samples} temperature={spec.temperature} top_p={spec.top_p} " \
               f"max_new_tokens={spec.max_new_tokens}"
    lines += _wrap("sampling", sampling)
    lines += _wrap("source", spec.protocol.source or "-")
    if spec.protocol.differences:
        lines += _wrap("differences", spec.protocol.differences)
    if spec.licence:
        lines += _wrap("licence", spec.licence)
    lines += _wrap("definition", spec.path or "-")
    return "\n".join(lines)


def _ids(spec: BenchmarkSpec) -> str:
    if spec.adapter == "wemath":
        return "ID/key of each row (e.g. 2steps_1/2steps_multi), or the 0-based row index"
    from eval.registry import candidates

    names = candidates(spec.fields.id)
    return f"the {' / '.join(names)} column" if names else "the 0-based row index"
