"""The one interface of a metric: what it needs from the feature pass, and how features become numbers.

A metric is an object registered under the `sidbench.metrics` entry-point group (the built-in
ones in `sidbench.metrics.builtin` too), so an outside package adds one without touching
`evaluate`. It declares the protocol options its `compute` reads (`options`); a protocol naming
any other option is refused when it is defined, so no option is ever declared and ignored.

`compute` gets `MetricInputs` and returns {result key: fields}; `evaluate` adds the fields every
metric carries (protocol, counts, extractor, deviations from the protocol).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sidbench.errors import ConfigError

if TYPE_CHECKING:  # annotations only: importing a metric must stay cheap (no torch)
    from sidbench.metrics.extractors.base import FeatureExtractor
    from sidbench.metrics.protocols import Protocol
    from sidbench.metrics.reference import ReferenceStats
    from sidbench.metrics.stats import FeatureStats

REFERENCE_KINDS = ("none", "stats", "features")


@dataclass(frozen=True)
class MetricInputs:
    """Everything one metric sees after the single pass over the images."""

    protocol: Protocol
    options: Mapping[str, Any]  # the protocol's options with this run's overrides applied
    features: FeatureStats  # generated images (raw features kept when the metric asked for them)
    extractor: FeatureExtractor
    reference: FeatureStats | None = None  # reference images, when they were extracted
    reference_stats: ReferenceStats | None = None  # precomputed statistics (.npz), for reference="stats"
    captions: Sequence[str] | None = None


class Metric:
    """Base class of registered metrics; subclasses set the attributes and implement `compute`.

    reference: "none" (IS, CLIP score), "stats" (mean and covariance suffice: an .npz or images,
    e.g. FID) or "features" (raw reference features from images, e.g. KID, precision/recall).
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    default_protocol: ClassVar[str] = ""
    result_keys: ClassVar[tuple[str, ...]] = ()  # entries of result["metrics"]; default (name,)
    options: ClassVar[frozenset[str]] = frozenset()  # protocol options `compute` reads
    keep_features: ClassVar[bool] = True  # raw generated features needed (else exact sums only)
    reference: ClassVar[str] = "none"
    protocols: ClassVar[tuple[Any, ...]] = ()  # protocols a plugin metric brings along

    def keys(self) -> tuple[str, ...]:
        return self.result_keys or (self.name,)

    def check_reference(self, reference: ReferenceStats, options: Mapping[str, Any]) -> None:
        """Refuse precomputed statistics this metric cannot use (called before any extraction)."""

    def compute(self, inputs: MetricInputs) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<metric {self.name}@{self.version}>"


def int_option(options: Mapping[str, Any], key: str, default: int) -> int:
    """An integer option (bools and fractional numbers are refused, not truncated)."""
    value = options.get(key, default)
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or int(value) != value):
        raise ConfigError(f"option '{key}' must be an integer, got {value!r}")
    return int(value)


def float_option(options: Mapping[str, Any], key: str, default: float | None) -> float | None:
    value = options.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"option '{key}' must be a finite number, got {value!r}")
    return float(value)


def choice_option(options: Mapping[str, Any], key: str, default: str, choices: Sequence[str]) -> str:
    value = options.get(key, default)
    if value not in choices:
        raise ConfigError(f"option '{key}' must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def bool_option(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"option '{key}' must be true or false, got {value!r}")
    return value
