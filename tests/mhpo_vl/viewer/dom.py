"""Reading a dumped DOM in tests: elements with an attribute, <body> attributes, script and image tags."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from mhpo_vl.viewer.browser import find_chromium

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it as root)")


class Dom(HTMLParser):
    """Tags with their attributes, in document order, and the text of the page."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def with_attr(self, name: str) -> list[dict[str, str | None]]:
        return [a for _, a in self.tags if name in a]

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]

    @property
    def body(self) -> dict[str, str | None]:
        return self.all("body")[0]
