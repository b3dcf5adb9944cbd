"""Metrics: exact feature statistics, FID / IS / KID / precision-recall / CLIP score, protocols.

digits-t2i adds prompt alignment (the digits classifier's probability of the prompted digit; not CLIP score).

`import sidbench.metrics` stays cheap (numpy only, no torch, no extractor). Metrics are registered
objects (`Metric`, in `sidbench.registry.METRICS`; the built-in ones in `sidbench.metrics.builtin`).
Four functions share
their module's name (`kid`, `inception_score`, `precision_recall`, `clip_score`): they are bound
eagerly so the package attribute is always the function; reach a module itself with
`from sidbench.metrics.kid import ...` or `importlib.import_module`. The rest load lazily (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import Any

from sidbench.metrics.clip_score import ClipScore, clip_score
from sidbench.metrics.inception_score import InceptionScore, inception_score
from sidbench.metrics.kid import KIDResult, kid
from sidbench.metrics.precision_recall import PrecisionRecall, precision_recall

_EXPORTS = {
    "FeatureStats": "stats",
    "fid_from_stats": "fid",
    "frechet_distance": "fid",
    "FrechetDistance": "fid",
    "trace_sqrt_product": "fid",
    "check_gaussian": "gaussian",
    "Metric": "metric",
    "MetricInputs": "metric",
    "get_metric": "catalog",
    "load_reference": "reference",
    "save_reference": "reference",
    "reference_images": "reference",
    "ReferenceStats": "reference",
    "get_protocol": "protocols",
    "PROTOCOLS": "protocols",
    "Protocol": "protocols",
}

__all__ = [
    "PROTOCOLS", "ClipScore", "FeatureStats", "FrechetDistance", "InceptionScore", "KIDResult", "Metric",
    "MetricInputs", "PrecisionRecall", "Protocol", "ReferenceStats", "check_gaussian", "clip_score",
    "fid_from_stats", "frechet_distance", "get_metric", "get_protocol", "inception_score", "kid",
    "load_reference", "precision_recall", "reference_images", "save_reference", "trace_sqrt_product",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sidbench.metrics' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"sidbench.metrics.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
