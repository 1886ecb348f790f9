"""Argument-parsing pieces shared by the three command lines (mhpo-vl, mhpo-prep, mhpo-eval)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line on stderr (exit code 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(kind: type, minimum: float, description: str) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}") from None
        if not value >= minimum:
            raise argparse.ArgumentTypeError(f"must be >= {kind(minimum)}, got {text}")
        return value

    parse.__name__ = description.replace(" ", "_")
    return parse


positive_int = _number(int, 1, "a whole number >= 1")
non_negative_float = _number(float, 0.0, "a number >= 0")
float_at_least_one = _number(float, 1.0, "a number >= 1")
