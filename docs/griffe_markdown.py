"""A griffe extension (named in mkdocs.yml under mkdocstrings' ``extensions``; excluded from the built site)
that shows the project's reST-flavoured docstrings as Markdown on the API pages.

- ``:mod:`x```-style roles become code spans, and a ``::`` literal marker becomes ``:``.
- A module docstring keeps the indentation of its example block. The usual docstring cleaning strips the
  common indentation of all lines after the first, so an example that makes up a module docstring's whole
  body (``mhpo_vl.algos``) would lose its code-block indent and render as prose, its ``x["k"](a, b)``
  read as a link.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

import griffe

_ROLE = re.compile(r":(?:mod|data|func|class|meth|attr|obj|exc):`~?\.?([^`]+)`")


def markdown_docstring(text: str) -> str:
    """reST roles and ``::`` markers as Markdown."""
    text = _ROLE.sub(lambda m: f"`{m.group(1)}`", text)
    return re.sub(r"::\n", ":\n", text)


class DocstringMarkdown(griffe.Extension):
    """Make the project's docstrings render as intended in Markdown (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        value = obj.docstring.value
        if obj.is_module and obj.filepath and Path(str(obj.filepath)).is_file():
            raw = ast.get_docstring(ast.parse(Path(str(obj.filepath)).read_text()), clean=False)
            if raw and inspect.cleandoc(raw) == value:
                value = _module_docstring(raw)
        obj.docstring.value = markdown_docstring(value)


def _module_docstring(raw: str) -> str:
    """A module docstring (which starts at column 0) with its indentation kept, outer blank lines dropped."""
    lines = [line.rstrip() for line in raw.expandtabs().splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)
