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


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def run_user_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace, *, prog: str,
                     verbose: bool = False, interrupt_hint: str = "") -> int:
    """Run a subcommand: a UserError becomes one line on stderr and exit code 2 (no traceback),
    Ctrl-C exit code 130, a closed output pipe (``| head``) a quiet exit 0."""
    import os
    import sys

    from mhpo_vl.errors import UserError

    try:
        return func(args)
    except UserError as exc:
        if verbose:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted{interrupt_hint}", file=sys.stderr)
        return 130
