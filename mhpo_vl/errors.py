"""User-facing errors: the CLI prints these as one line and exits with code 2, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (config, paths, data) rather than a bug in mhpo-vl."""


class ConfigError(UserError, ValueError):
    """A config file or override that cannot be used; the message names the key path."""
