"""Name-checked registries of methods, suites and metrics, filled from entry points.

A plugin package registers objects under the entry-point groups `sidbench.methods`,
`sidbench.suites` and `sidbench.metrics` (the project's own suites and methods and the
`baselines/` package use the same route). A plugin is never allowed to break the harness or
another plugin: an entry point that fails at import, whose object is not of the registry's
kind, whose object calls itself by another name, or whose name another distribution also
registers is recorded in `Registry.broken` by name with its error, so `sidbench ls` can list
it and `get` can say what is wrong, while every other name keeps working. When sidbench itself
provides a name that a plugin registers again, sidbench's object stays and the plugin's entry
point is the one reported; between two plugins neither wins (which would depend on the order
of `sys.path`): the name is refused until one of them is renamed or uninstalled.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points
from importlib.metadata import version as installed_version
from typing import Any, Generic, TypeVar

from sidbench.errors import ConfigError

T = TypeVar("T")

HOME = "sidbench"  # the distribution whose own entry points win a name a plugin registers again


def suggest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """' Did you mean X?' for the closest valid name, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


@dataclass
class BrokenPlugin:
    """A registered entry point that could not be used: its name, distribution(s) and why."""

    name: str
    source: str  # the distribution(s) that register it (the entry point's value when it has none)
    error: str
    value: str = ""  # the entry point's object reference, 'module:attribute'
    version: str = ""  # the distribution's version, when there is one distribution


def _dist_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else ep.value


def _dist_version(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return str(dist.version) if dist is not None else ""


def _is_instance_of(obj: Any, qualname: str) -> bool:
    """isinstance by the class's qualified name: the registry sits below the layers that define the kinds."""
    return any(f"{c.__module__}.{c.__qualname__}" == qualname for c in type(obj).__mro__)


@dataclass
class Registry(Generic[T]):
    """One kind of registered object (`kind` 'method'), filled lazily from entry-point `group`.

    `expects`: the qualified class name ('sidbench.methods.base.Method') an entry point's object
    must be an instance of; None accepts anything (direct `register` calls are never checked).
    """

    kind: str
    group: str
    expects: str | None = None
    _items: dict[str, T] = field(default_factory=dict)
    _sources: dict[str, str] = field(default_factory=dict)
    broken: dict[str, BrokenPlugin] = field(default_factory=dict)
    _loaded: bool = False
    _versions: dict[str, str] = field(default_factory=dict)

    def register(self, name: str, obj: T, source: str = HOME) -> T:
        """Register `obj` as `name` in this process; a second, different object for a name is an error."""
        if name in self._items and self._items[name] is not obj:
            raise ConfigError(
                f"{self.kind} '{name}' is registered twice ({self._sources[name]} and {source})")
        self._items[name] = obj
        self._sources[name] = source
        return obj

    def load_entry_points(self) -> None:
        """Import every entry point of the group once; remember each one that cannot be used, by name."""
        if self._loaded:
            return
        self._loaded = True
        claims: dict[str, list[EntryPoint]] = {}
        for ep in entry_points(group=self.group):
            same = claims.setdefault(ep.name, [])
            if not any(_dist_name(o) == _dist_name(ep) and o.value == ep.value for o in same):
                same.append(ep)  # one distribution found twice on sys.path is one claim
        for name, eps in claims.items():
            home = [ep for ep in eps if _dist_name(ep) == HOME]
            if len(eps) == 1 or len(home) == 1:
                chosen = eps[0] if len(eps) == 1 else home[0]
                others = [ep for ep in eps if ep is not chosen]
                self._load(name, chosen)
                if others and name not in self.broken:
                    self._mark(name, others, f"{HOME} itself provides {self.kind} '{name}' ({chosen.value}); "
                                             "this entry point is ignored: rename it")
            else:
                listed = " and ".join(f"{_dist_name(ep)} ({ep.value})" for ep in eps)
                self._mark(name, eps, f"{len(eps)} entry points register {self.kind} '{name}': {listed}; "
                                      "neither is used: uninstall one or rename its entry point")

    def _mark(self, name: str, eps: list[EntryPoint], error: str) -> None:
        one = eps[0] if len(eps) == 1 else None
        self.broken[name] = BrokenPlugin(
            name, ", ".join(_dist_name(ep) for ep in eps), error,
            value=", ".join(ep.value for ep in eps), version=_dist_version(one) if one is not None else "")

    def _load(self, name: str, ep: EntryPoint) -> None:
        try:
            obj = ep.load()
        except (Exception, SystemExit) as exc:  # a broken plugin must not break the harness
            self._mark(name, [ep], f"{type(exc).__name__}: {exc}")
            return
        problem = self._problem(name, ep, obj)
        if problem is not None:
            self._mark(name, [ep], problem)
        elif name in self._items and self._items[name] is not obj:
            self._mark(name, [ep], f"{self.kind} '{name}' is already registered by {self._sources[name]}; "
                                   "this entry point is ignored: rename it")
        elif name not in self._items:
            self.register(name, obj, _dist_name(ep))
            self._versions[name] = _dist_version(ep)

    def _problem(self, name: str, ep: EntryPoint, obj: Any) -> str | None:
        """Why a loaded object cannot be this registry's `name`, or None."""
        if self.expects is not None and not _is_instance_of(obj, self.expects):
            what = obj.__name__ if isinstance(obj, type) else type(obj).__name__
            return (f"{ep.value} is {'the class' if isinstance(obj, type) else 'a'} {what}, not a "
                    f"{self.expects} instance: point the entry point at the {self.kind} object")
        own = getattr(obj, "name", None)
        if isinstance(own, str) and own != name:
            return (f"the entry point is named '{name}' but its {self.kind} calls itself '{own}': "
                    "make the two names equal")
        return None

    def get(self, name: str) -> T:
        """The object registered as `name`; a broken or unknown name is a one-line ConfigError."""
        self.load_entry_points()
        if name in self._items:
            return self._items[name]
        if name in self.broken:
            b = self.broken[name]
            raise ConfigError(f"{self.kind} '{name}' from {b.source} failed to load: {b.error}",
                              hint="fix or uninstall that package; `sidbench ls` lists what loaded")
        raise ConfigError(f"unknown {self.kind} '{name}'.{suggest(name, self.names())}",
                          hint=f"`sidbench ls` lists the registered {self.kind}s")

    def names(self) -> list[str]:
        """The usable names, sorted (broken ones are in `broken`)."""
        self.load_entry_points()
        return sorted(self._items)

    def known(self, name: str) -> bool:
        """Whether `name` is registered at all, usable or broken (a CLI choice that `get` then explains)."""
        self.load_entry_points()
        return name in self._items or name in self.broken

    def source(self, name: str) -> str:
        """The distribution (or in-process caller) that registered `name`."""
        return self._sources[name]

    def distribution(self, name: str) -> str:
        """'name version' of the distribution that provides `name` (the bare source when it has none)."""
        source = self._sources[name]
        found = self._versions.get(name)
        if found is None:
            try:
                found = installed_version(source)
            except (PackageNotFoundError, ValueError):
                found = ""
        return f"{source} {found}" if found else source

    def items(self) -> list[tuple[str, T]]:
        self.load_entry_points()
        return sorted(self._items.items())


METHODS: Registry[Any] = Registry("method", "sidbench.methods", expects="sidbench.methods.base.Method")
SUITES: Registry[Any] = Registry("suite", "sidbench.suites", expects="sidbench.suites.base.Suite")
METRICS: Registry[Any] = Registry("metric", "sidbench.metrics", expects="sidbench.metrics.metric.Metric")
