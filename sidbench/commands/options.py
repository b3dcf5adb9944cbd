"""What the verbs share (this module is not a verb): registry-backed choices and the args -> API call.

Every option's destination is the name of a parameter of the verb's API function, so a
command is `api.VERB(**api_arguments(args))` plus printing.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from sidbench.registry import Registry

# Destinations that belong to the `sidbench` program, not to the verb's API function.
_PROGRAM_DESTS = ("verb", "debug")


class RegistryChoices:
    """argparse `choices` read from a registry only when a value is checked (no import cost for --help)."""

    def __init__(self, registry: Registry):
        self.registry = registry

    def __contains__(self, value: object) -> bool:
        # A broken plugin is a valid choice: the verb's `get` then prints its load error on one line.
        return isinstance(value, str) and self.registry.known(value)

    def __iter__(self) -> Iterator[str]:
        return iter(self.registry.names())

    def __len__(self) -> int:
        return len(self.registry.names())


class AppendTuple(argparse.Action):
    """A repeatable option collected into a tuple (the API's default `()` cannot be appended to)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, (*getattr(namespace, self.dest, ()), values))


def alias_note(*old: str) -> str:
    """Help suffix for spellings kept for compatibility."""
    return f" (old spelling{'s' if len(old) > 1 else ''} {', '.join(old)} still accepted)"


def api_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options as keyword arguments of the verb's API function."""
    return {k: v for k, v in vars(args).items() if k not in _PROGRAM_DESTS}
