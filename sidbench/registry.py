"""Name-checked registries of methods, suites and metrics, filled from entry points.

A plugin package registers objects under the entry-point groups `sidbench.methods`,
`sidbench.suites` and `sidbench.metrics` (the project's own suites and the
`baselines/` package use the same route). A plugin that fails to import is recorded
by name with its error, so `sidbench ls` can report it instead of crashing.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from sidbench.errors import ConfigError

T = TypeVar("T")


def suggest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """' Did you mean X?' for the closest valid name, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


@dataclass
class BrokenPlugin:
    """A registered entry point that could not be loaded."""

    name: str
    source: str
    error: str


@dataclass
class Registry(Generic[T]):
    kind: str
    group: str
    _items: dict[str, T] = field(default_factory=dict)
    _sources: dict[str, str] = field(default_factory=dict)
    broken: dict[str, BrokenPlugin] = field(default_factory=dict)
    _loaded: bool = False

    def register(self, name: str, obj: T, source: str = "sidbench") -> T:
        if name in self._items and self._items[name] is not obj:
            raise ConfigError(
                f"{self.kind} '{name}' is registered twice ({self._sources[name]} and {source})")
        self._items[name] = obj
        self._sources[name] = source
        return obj

    def load_entry_points(self) -> None:
        """Import every entry point of the group once; remember failures by name."""
        if self._loaded:
            return
        self._loaded = True
        for ep in entry_points(group=self.group):
            source = ep.dist.name if ep.dist is not None else ep.value
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break the harness
                self.broken[ep.name] = BrokenPlugin(ep.name, source, f"{type(exc).__name__}: {exc}")
                continue
            if ep.name not in self._items:
                self.register(ep.name, obj, source)

    def get(self, name: str) -> T:
        self.load_entry_points()
        if name in self._items:
            return self._items[name]
        if name in self.broken:
            b = self.broken[name]
            raise ConfigError(f"{self.kind} '{name}' from {b.source} failed to load: {b.error}")
        raise ConfigError(f"unknown {self.kind} '{name}'.{suggest(name, self.names())}",
                          hint=f"`sidbench ls` lists the registered {self.kind}s")

    def names(self) -> list[str]:
        self.load_entry_points()
        return sorted(self._items)

    def source(self, name: str) -> str:
        return self._sources[name]

    def items(self) -> list[tuple[str, T]]:
        self.load_entry_points()
        return sorted(self._items.items())


METHODS: Registry[Any] = Registry("method", "sidbench.methods")
SUITES: Registry[Any] = Registry("suite", "sidbench.suites")
METRICS: Registry[Any] = Registry("metric", "sidbench.metrics")
