"""Headless Chromium for checking and screenshotting viewer pages (tests, README screenshots).

Uses Debian's ``chromium`` (``apt-get install chromium``); every call gets a fresh profile and no
network features, and runs the page's JavaScript before dumping the DOM or taking the picture.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--mute-audio"]


def find_chromium() -> str | None:
    """Path of a Chromium binary ($CHROMIUM first), or None."""
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"])
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def _run(page: Path, extra: list[str], budget_ms: int, timeout: float, fragment: str = "") -> str:
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium not found (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="mhpo-chromium-") as profile:
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *extra,
               Path(page).resolve().as_uri() + fragment]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited with {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def dump_dom(page: Path, *, budget_ms: int = 10000, timeout: float = 120) -> str:
    """The page's DOM as HTML after its scripts ran and images loaded (or failed)."""
    return _run(page, ["--dump-dom"], budget_ms, timeout)


def screenshot(page: Path, png: Path, *, width: int = 1280, height: int = 1600, fragment: str = "",
               budget_ms: int = 10000, timeout: float = 120) -> Path:
    """A PNG of the page's first ``width`` x ``height`` pixels; ``fragment`` (e.g. ``"#step=3"``) sets its state."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    _run(page, [f"--screenshot={png}", f"--window-size={width},{height}"], budget_ms, timeout, fragment)
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {png}")
    return png
