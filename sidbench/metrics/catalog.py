"""Which metrics exist: the built-in ones and those outside packages register under `sidbench.metrics`.

The built-in metrics go into `sidbench.registry.METRICS` here as well as through the project's
own entry points (the same objects, so either route may come first), so they are found even in
a source tree whose package metadata is stale. Looking a built-in name up never imports
plugins; any other name loads the entry points.
"""

from __future__ import annotations

from sidbench.errors import ConfigError
from sidbench.metrics.builtin import BUILTIN
from sidbench.metrics.metric import REFERENCE_KINDS, Metric
from sidbench.registry import METRICS, suggest

for _name, _metric in BUILTIN.items():
    METRICS.register(_name, _metric, "sidbench")

_REQUIRED = ("name", "version", "description", "default_protocol", "options", "keep_features", "reference",
             "compute")


def check_metric(name: str, metric: object) -> Metric:
    """A registered object that does not have a metric's interface is refused by name, once, clearly."""
    missing = [a for a in _REQUIRED if not hasattr(metric, a)]
    if missing:
        raise ConfigError(f"metric '{name}' ({type(metric).__name__}) lacks {', '.join(missing)}",
                          hint="register an instance of a sidbench.metrics.metric.Metric subclass")
    if metric.name != name:  # type: ignore[attr-defined]
        raise ConfigError(f"metric registered as '{name}' calls itself '{metric.name}'",  # type: ignore
                          hint="the entry-point name and the metric's `name` must agree")
    if metric.reference not in REFERENCE_KINDS:  # type: ignore[attr-defined]
        raise ConfigError(f"metric '{name}': reference={metric.reference!r}",  # type: ignore[attr-defined]
                          hint=f"use one of {', '.join(REFERENCE_KINDS)}")
    return metric  # type: ignore[return-value]


def get_metric(name: str) -> Metric:
    """The metric registered as `name` (canonical name; see `canonical_name` for aliases)."""
    if name in BUILTIN:
        return BUILTIN[name]
    return check_metric(name, METRICS.get(name))


def metric_names() -> list[str]:
    """Every registered metric (plugins included), sorted."""
    return sorted(set(BUILTIN) | set(METRICS.names()))


def _aliases() -> dict[str, str]:
    objs = {**dict(METRICS.items()), **BUILTIN}
    return {a: name for name, obj in objs.items() for a in getattr(obj, "aliases", ())}


def canonical_name(raw: str) -> str:
    """'FID', 'precision', 'isc' -> the registered name ('fid', 'pr', 'is'); unknown ones get a suggestion."""
    m = raw.strip().lower()
    if m in BUILTIN:
        return m
    names = metric_names()
    if m in names:
        return m
    if m in METRICS.broken:
        METRICS.get(m)  # raises: the plugin's own import error, by name
    aliases = _aliases()
    if m in aliases:
        return aliases[m]
    raise ConfigError(f"unknown metric '{raw.strip()}'.{suggest(raw.strip(), names)}",
                      hint=f"choose from {', '.join(names)}")
