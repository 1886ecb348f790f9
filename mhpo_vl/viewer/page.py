"""The viewer page: one self-contained ``index.html`` (inline CSS and JS, data as inert JSON) + ``images/``.

Everything from a run or a dataset reaches the page either HTML-escaped here or as JSON inside
``<script type="application/json">`` (with ``<``, ``>``, ``&`` escaped, so no text can close the block),
which the script renders with DOM text nodes. A Content-Security-Policy allows only the page's own
script (by hash), its own style and images from the page's folder: no network, no other file.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

IMAGE_NAME_CHARS = set("0123456789abcdef")


def _static(name: str) -> str:
    return resources.files("mhpo_vl.viewer").joinpath("static", name).read_text(encoding="utf-8")


def json_for_html(data: Any) -> str:
    """JSON safe inside a <script> data block: no raw ``<``, ``>``, ``&``, U+2028/9; non-finite numbers -> null."""
    text = json.dumps(_finite(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def summary_table(rows: list[tuple[str, Any]]) -> str:
    """An escaped two-column HTML table."""
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="summary">{cells}</table>'


def valid_image_name(name: Any) -> bool:
    """A thumbnail name the viewer itself made: hex digest + .png/.jpg, nothing that could leave the folder."""
    if not isinstance(name, str) or "." not in name:
        return False
    stem, ext = name.rsplit(".", 1)
    return ext in ("png", "jpg") and 8 <= len(stem) <= 64 and set(stem) <= IMAGE_NAME_CHARS


def copy_image(src_dir: Path, name: str, out_dir: Path) -> bool:
    """Copy ``src_dir/name`` to ``out_dir/images/`` when the name is one of ours and the file a regular file
    inside ``src_dir`` (not a link out of it)."""
    if not valid_image_name(name):
        return False
    src = src_dir / name
    if src.is_symlink() or not src.is_file() or not src.resolve().is_relative_to(src_dir.resolve()):
        return False
    dest = out_dir / "images" / name
    if not dest.exists() or dest.resolve() != src.resolve():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    return True


def write_page(out_dir: Path, *, title: str, data: dict[str, Any], header_html: str = "") -> Path:
    """Write ``out_dir/index.html``; ``header_html`` must already be escaped (see :func:`summary_table`)."""
    script = _static("viewer.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    css = _static("viewer.css")
    css_digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode()
    csp = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'sha256-{css_digest}'; "
           "img-src 'self' file: data:; base-uri 'none'; form-action 'none'")
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{html.escape(csp)}\">\n"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{html.escape(title)}</title>\n"
        f"<style>{css}</style>\n</head>\n<body>\n<header id=\"header\">\n<h1>{html.escape(title)}</h1>\n{header_html}\n</header>\n"
        "<noscript><p>This viewer needs JavaScript (it runs locally; nothing is fetched).</p></noscript>\n"
        "<main id=\"app\"></main>\n"
        f"<script type=\"application/json\" id=\"viewer-data\">{json_for_html(data)}</script>\n"
        f"<script>{script}</script>\n</body>\n</html>\n"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    tmp = out_dir / f".index.html.{os.getpid()}.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
