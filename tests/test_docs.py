"""The documentation: a short README, links that resolve, a complete generated config reference, and a
site that builds with `mkdocs build --strict` (see docs/development.md, "The documentation")."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
import typing
import unicodedata
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_MAX_LINES = 300


def _load(name: str, path: Path) -> ModuleType:
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


gen = _load("gen_config_reference", ROOT / "scripts" / "gen_config_reference.py")
hooks = _load("mhpo_docs_hooks", DOCS / "hooks.py")


# ----------------------------------------------------------------------------- links and anchors

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$", re.M)
_ATTR_ID = re.compile(r"\{#([^}\s]+)\}\s*$")
_HTML_ID = re.compile(r"""<a\s+id=["']([^"']+)["']""")


def _prose(markdown: str) -> str:
    """The Markdown without fenced code blocks, code spans and HTML comments (links there are no links)."""
    markdown = re.sub(r"<!--.*?-->", "", _FENCE.sub("", markdown), flags=re.S)
    return _CODE.sub("", markdown)


def _heading_text(raw: str) -> str:
    raw = _ATTR_ID.sub("", raw)
    raw = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", raw)  # a link's text
    return raw.replace("`", "").replace("*", "").strip()


def mkdocs_slug(text: str) -> str:
    """Python-Markdown's toc slug (what MkDocs gives a heading)."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def github_slug(text: str) -> str:
    """GitHub's heading anchor."""
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str] | None:
    """The anchors a link into ``path`` may use: explicit ids, and the slug of every heading whose MkDocs and
    GitHub slugs agree (so the link works in the site and on GitHub). None for API pages (ids made by
    mkdocstrings; the strict build checks those)."""
    text = path.read_text()
    if re.search(r"^::: ", text, re.M):
        return None
    text = hooks.fill(text)
    found = set(_HTML_ID.findall(text))
    for _, raw in _HEADING.findall(_FENCE.sub("", text)):
        explicit = _ATTR_ID.search(raw)
        if explicit:
            found.add(explicit.group(1))
            continue
        title = _heading_text(raw)
        if mkdocs_slug(title) == github_slug(title):
            found.add(mkdocs_slug(title))
    return found


def broken_links(path: Path) -> list[str]:
    """Every relative link in Markdown file ``path`` whose file or anchor does not exist."""
    problems = []
    for target in _LINK.findall(_prose(path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
            continue
        if anchor and dest.suffix == ".md":
            valid = anchors(dest)
            if valid is not None and anchor not in valid:
                problems.append(f"{path.relative_to(ROOT)}: {target} (no such anchor in {dest.name})")
    return problems


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def test_readme_is_a_short_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"


def test_every_relative_link_resolves():
    problems = [p for path in _markdown_files() for p in broken_links(path)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_readme_links_into_every_docs_page():
    readme = _prose((ROOT / "README.md").read_text())
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in _LINK.findall(readme) if t.startswith("docs/")}
    pages = {p.resolve() for p in DOCS.rglob("*.md")}
    assert pages - linked == set(), f"pages the README does not link to: {sorted(pages - linked)}"


def test_the_link_checker_finds_broken_links(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "b.md").write_text("# Speed: `make bench`\n\n## A / B\n\ntext\n")
    (tmp_path / "a.md").write_text(
        "[ok](b.md#speed-make-bench) [file](missing.md) [anchor](b.md#nope) [differs](b.md#a-b) "
        "`[code](missing.md)` [web](https://example.org/x)\n")
    assert broken_links(tmp_path / "a.md") == [
        "a.md: missing.md (no such file)", "a.md: b.md#nope (no such anchor in b.md)",
        "a.md: b.md#a-b (no such anchor in b.md)"]  # "A / B": a-b in MkDocs, a--b on GitHub


# ----------------------------------------------------------------------------- the config reference


def config_keys(cls: type, prefix: str = "") -> list[str]:
    """Every leaf key of a config dataclass, walked recursively (independently of the generator)."""
    keys = []
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}" if prefix else f.name
        tp = typing.get_type_hints(cls)[f.name]
        keys += config_keys(tp, path) if dataclasses.is_dataclass(tp) else [path]
    return keys


def test_config_reference_lists_every_key():
    from mhpo_vl.config import Config

    keys = config_keys(Config)
    assert len(keys) > 100 and "rollout.vllm.dtype" in keys and "model.lora.r" in keys
    page = hooks.fill((DOCS / "config-reference.md").read_text())
    rows = re.findall(r'^\| <a id="([^"]+)"></a>`\1` \|', page, re.M)
    assert sorted(rows) == sorted(keys), f"missing: {sorted(set(keys) - set(rows))}; extra: {sorted(set(rows) - set(keys))}"
    for section in ("model", "model.lora", "rollout.vllm", "algo", "logging"):
        assert f"{{#{section}}}" in page


def test_config_reference_takes_help_from_the_code():
    page = gen.render()
    row = next(line for line in page.splitlines() if 'id="algo.max_rollout_mismatch"' in line)
    assert "| float | `1.0` |" in row and "nats per response token" in row and "must be &gt;= 0" in row
    row = next(line for line in page.splitlines() if 'id="algo.c"' in line)
    assert "*MHPO:*" in row and "mhpo: `1.5`" in row  # the group heading and the loss's own default
    row = next(line for line in page.splitlines() if 'id="algo.name"' in line)
    assert "`mhpo`" in row and "`gmpo`" in row  # the registry's names
    row = next(line for line in page.splitlines() if 'id="reward.extract"' in line)
    assert "&lt;answer&gt;" in row and "\\|" in row  # HTML and table pipes escaped


def test_field_comments_parser():
    @dataclasses.dataclass
    class Example:
        plain: int = 0
        beside: int = 1  # said beside
        # said above, a sentence.
        above: int = 2
        # A group
        first: int = 3
        second: int = 4  # own words

        after_blank: int = 5
        # a comment: not a heading
        last: int = 6
        also_last: int = 7

    assert gen.field_comments(Example) == {
        "plain": ("", ""), "beside": ("said beside", ""), "above": ("said above, a sentence.", ""),
        "first": ("", "A group"), "second": ("own words", "A group"), "after_blank": ("", ""),
        "last": ("a comment: not a heading", ""), "also_last": ("", "")}


def test_generated_blocks_are_filled():
    text = "a\n<!-- generated: loss-defaults -->\nshown on GitHub\n<!-- /generated -->\nb\n"
    filled = hooks.fill(text)
    assert "shown on GitHub" not in filled and "| `mhpo` |" in filled and "`c: 1.5`" in filled
    benchmarks = hooks.fill("<!-- generated: benchmarks -->\n<!-- /generated -->")
    assert "### `mathvision`" in benchmarks and "mathllm/MATH-V" in benchmarks and "`MathLLMs/MathVision`" in benchmarks
    with pytest.raises(ValueError, match="unknown generated block"):
        hooks.fill("<!-- generated: nope -->\n<!-- /generated -->")


# ----------------------------------------------------------------------------- the site


def test_mkdocs_build_strict(tmp_path):
    """The site builds offline with --strict: a broken link or anchor, or a page missing from nav, fails."""
    if importlib.util.find_spec("mkdocs") is None:
        if os.environ.get("MHPO_DOCS_REQUIRED"):
            pytest.fail("mkdocs is not installed although MHPO_DOCS_REQUIRED is set (make test installs the docs extra)")
        pytest.skip("mkdocs is not installed: `make docs-setup` (or pip install -e '.[docs]') installs it")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reference = (site / "config-reference.html").read_text()
    assert 'id="rollout.vllm.cpu_kvcache_space_gb"' in reference and "On GitHub this file" not in reference
    assert "| `mhpo` |" not in (site / "algorithm.html").read_text()  # the loss table became HTML
    api = (site / "api" / "algos.html").read_text()
    assert 'id="mhpo_vl.algos.mhpo_loss"' in api and '<a href="logp' not in api
    assert not list(site.rglob("*.py")), "the hooks were copied into the site"
