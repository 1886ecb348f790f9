"""Generate the configuration reference (docs/config-reference.md) from the config dataclasses.

Every key of a recipe, with its dotted path, type and default, is read from ``mhpo_vl.config`` itself;
the help text is the comment written beside the field (or the comment block right above it, or the
short group heading such as ``# MHPO`` above a run of fields), the section's docstring, the loss's own
default for loss hyperparameters left at ``None``, and the plain-text checks of the section's
``validate``. Nothing is written by hand, so the page cannot drift from the code.

    python scripts/gen_config_reference.py            # print the reference as Markdown
    python scripts/gen_config_reference.py --missing  # list the keys that have no comment in config.py

The docs build calls :func:`render` from ``docs/hooks.py`` for the ``config-reference`` block of
docs/config-reference.md.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import json
import sys
import textwrap
import tokenize
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class KeyDoc:
    """One documented key: where it is, what it holds and what the code says about it."""

    path: str
    type: str
    default: Any
    help: str = ""
    group: str = ""
    checks: tuple[str, ...] = ()
    loss_defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    choices: tuple[str, ...] = ()


@dataclass
class SectionDoc:
    """One config dataclass (a recipe section or a nested one such as ``model.lora``)."""

    path: str
    cls: type
    doc: str
    keys: list[KeyDoc]


def _import_config() -> Any:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import mhpo_vl.config as config

    return config


def field_comments(cls: type) -> dict[str, tuple[str, str]]:
    """``{field: (help, group)}`` from the comments in ``cls``'s source.

    A comment on the field's own line is its help; otherwise a comment block directly above it (no blank
    line between). A one-line label above a run of fields (at most 8 words, no sentence: no final full stop,
    colon, semicolon or "=") is a group heading: it applies to every field of the run, up to the next blank
    line or comment.
    """
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    trailing: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and lines[tok.start[0] - 1][: tok.start[1]].strip():
            trailing[tok.start[0]] = tok.string.lstrip("#").strip()
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    out: dict[str, tuple[str, str]] = {}
    group = ""
    for node in body.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        line = node.lineno
        block: list[str] = []
        above = line - 1
        while above >= 1 and lines[above - 1].strip().startswith("#"):
            block.insert(0, lines[above - 1].strip().lstrip("#").strip())
            above -= 1
        if len(block) == 1 and _is_heading(block[0]):
            group, block = block[0], []
        elif block or not lines[line - 2].strip():
            group = ""
        out[node.target.id] = (trailing.get(line) or " ".join(block), group)
    return out


def _is_heading(comment: str) -> bool:
    """A short label such as ``MHPO`` or ``KL to a reference policy (off by default)``, not a sentence."""
    return len(comment.split()) <= 8 and not comment.endswith(".") and not any(c in comment for c in ":;=")


def validate_checks(cls: type) -> dict[str, list[str]]:
    """``{field: [message, ...]}`` from the ``_check(cond, f"{path}.field", "message")`` calls of
    ``cls.validate`` whose message is plain text."""
    func = getattr(cls, "validate", None)
    if func is None:
        return {}
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    checks: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "_check" and len(node.args) == 3):
            continue
        key, message = node.args[1], node.args[2]
        if not (isinstance(message, ast.Constant) and isinstance(message.value, str)):
            continue
        if isinstance(key, ast.JoinedStr) and isinstance(key.values[-1], ast.Constant):
            name = str(key.values[-1].value).lstrip(".")
            if name.isidentifier():
                checks.setdefault(name, []).append(message.value)
    return checks


def type_name(tp: Any) -> str:
    """A short readable type: ``int``, ``list[str]``, ``"hf" or "vllm"``, ``float or null``."""
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(json.dumps(a) for a in get_args(tp))
    if origin is Union or (origin is not None and getattr(origin, "__name__", "") == "UnionType"):
        parts = [type_name(a) for a in get_args(tp) if a is not type(None)]
        if type(None) in get_args(tp):
            parts.append("null")
        return " or ".join(parts)
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in get_args(tp))}]"
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


#: Keys whose allowed values are a registry in the code: the reference lists the registry's current names.
CHOICES = {
    "model.dtype": ("mhpo_vl.config", "DTYPES"),
    "algo.name": ("mhpo_vl.algos", "POLICY_LOSSES"),
    "algo.agg": ("mhpo_vl.algos", "AGG_MODES"),
    "algo.hazard": ("mhpo_vl.algos", "HAZARDS"),
    "reward.components": ("mhpo_vl.rewards", "REWARDS"),
}


def choices(path: str) -> list[str]:
    """The names a key may take, read from its registry (see :data:`CHOICES`); [] for other keys."""
    if path not in CHOICES:
        return []
    module, name = CHOICES[path]
    _import_config()
    registry = getattr(__import__(module, fromlist=[name]), name)
    return [str(n) for n in registry]


def loss_hparam_defaults() -> dict[str, dict[str, Any]]:
    """``{hyperparameter: {loss: default}}`` over every loss in ``POLICY_LOSSES``."""
    from mhpo_vl.algos import POLICY_LOSSES, loss_defaults

    table: dict[str, dict[str, Any]] = {}
    for loss in POLICY_LOSSES:
        for name, default in loss_defaults(loss).items():
            table.setdefault(name, {})[loss] = default
    return table


def collect(root: type | None = None, prefix: str = "") -> list[SectionDoc]:
    """Every config dataclass reachable from ``Config`` (or ``root``), depth first, with its keys."""
    config = _import_config()
    root = root or config.Config
    hparams = loss_hparam_defaults() if root is config.Config or root is config.AlgoConfig else {}
    return _walk(root, prefix, hparams)


def _walk(cls: type, prefix: str, hparams: dict[str, dict[str, Any]]) -> list[SectionDoc]:
    hints = typing.get_type_hints(cls)
    comments, checks = field_comments(cls), validate_checks(cls)
    instance = cls()
    section = SectionDoc(prefix, cls, inspect.cleandoc(cls.__doc__ or ""), [])
    nested: list[SectionDoc] = []
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            nested.extend(_walk(tp, path, hparams))
            continue
        help_text, group = comments.get(f.name, ("", ""))
        default = getattr(instance, f.name)
        by_loss = hparams.get(f.name, {}) if default is None and cls.__name__ == "AlgoConfig" else {}
        section.keys.append(KeyDoc(path, type_name(tp), default, help_text, group,
                                   tuple(checks.get(f.name, ())), by_loss, tuple(choices(path))))
    return ([section] if section.keys else []) + nested


def escape(text: str) -> str:
    """Markdown-safe table text: code spans kept, and outside them ``< > * [ |`` shown as written."""
    pieces = text.replace("\n", " ").split("`")
    for i in range(0, len(pieces), 2):  # the even pieces lie outside code spans
        piece = pieces[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        pieces[i] = piece.replace("*", "\\*").replace("[", "\\[")
    return "`".join(pieces).replace("|", "\\|")


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?)" else text + "."


def _value(value: Any) -> str:
    return f"`{json.dumps(value)}`"


def describe(key: KeyDoc) -> str:
    """The description cell of one key (Markdown, escaped for a table)."""
    parts: list[str] = []
    if key.group:
        parts.append(f"*{escape(key.group)}:*")
    if key.help:
        parts.append(escape(_sentence(key.help)))
    if key.choices:
        parts.append("One of " + ", ".join(f"`{c}`" for c in key.choices) + ".")
    if key.loss_defaults:
        grouped: dict[str, list[str]] = {}
        for loss, value in key.loss_defaults.items():
            grouped.setdefault(json.dumps(value), []).append(loss)
        each = "; ".join(f"{', '.join(losses)}: `{value}`" for value, losses in grouped.items())
        parts.append(f"`null` takes the loss's own default ({each}); other losses do not take this key.")
    if key.checks:
        parts.append(escape("Checked: " + "; ".join(key.checks) + "."))
    return " ".join(parts) if parts else "–"


def render(sections: list[SectionDoc] | None = None) -> str:
    """The reference as Markdown: the sections, then one table per section with one row (and anchor) per key."""
    sections = sections if sections is not None else collect()
    out = ["| section | what |", "|---|---|"]
    for section in sections:
        summary = section.doc.split("\n\n")[0].replace("\n", " ")
        out.append(f"| [`{section.path}`](#{section.path}) | {escape(summary)} |")
    out.append("")
    for section in sections:
        out += [f"## `{section.path}` {{#{section.path}}}", "", section.doc, "",
                f"Defined by `{section.cls.__module__}.{section.cls.__name__}`.", "",
                "| key | type | default | description |", "|---|---|---|---|"]
        for key in section.keys:
            anchor = f'<a id="{key.path}"></a>'
            cells = [f"{anchor}`{key.path}`", escape(key.type), escape(_value(key.default)), describe(key)]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def missing_comments(sections: list[SectionDoc] | None = None) -> list[str]:
    """Keys with no comment of their own in config.py (a group heading does not count)."""
    sections = sections if sections is not None else collect()
    return [key.path for section in sections for key in section.keys if not key.help]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--missing", action="store_true", help="list the keys without a comment in config.py")
    args = parser.parse_args(argv)
    sections = collect()
    print("\n".join(missing_comments(sections)) if args.missing else render(sections))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
