"""User-facing errors: one line that says what is wrong and what to do.

The CLI prints a `SidbenchError` as a single line on stderr (no traceback unless
`--debug`); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class SidbenchError(Exception):
    """An error caused by the user's input or environment, with a remedy."""

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")


class AssetError(SidbenchError):
    """A required file (weights, dataset, statistics) is missing or not the expected one."""


class ConfigError(SidbenchError):
    """A bad setting, YAML key, option value or CLI argument."""


class CheckpointError(SidbenchError):
    """A weights or checkpoint file that cannot be loaded as asked."""


class DatasetError(SidbenchError):
    """A dataset that does not match what the suite expects."""
