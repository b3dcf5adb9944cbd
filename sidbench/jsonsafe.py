"""JSON with non-finite floats: the one spelling the harness uses everywhere.

JSON has no inf or nan, and `json.dumps` would silently write the invalid tokens
`Infinity`/`NaN`. Every file the harness writes (network configs, manifests,
records, run state) stores them as the strings "inf", "-inf" and "nan", and
`decode_nonfinite` turns those strings back into floats.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def encode_nonfinite(value: Any) -> Any:
    """A copy of `value` (dicts, lists, tuples, scalars) with inf/nan floats as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): encode_nonfinite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode_nonfinite(v) for v in value]
    return value


def decode_nonfinite(value: Any) -> Any:
    """Inverse of `encode_nonfinite`: the strings "inf", "-inf", "nan" become floats."""
    if isinstance(value, str) and value.lower() in _NONFINITE:
        return _NONFINITE[value.lower()]
    if isinstance(value, Mapping):
        return {k: decode_nonfinite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [decode_nonfinite(v) for v in value]
    return value


def dumps(obj: Any, **kwargs: Any) -> str:
    """`json.dumps` that encodes non-finite floats and refuses anything else JSON cannot hold."""
    kwargs.setdefault("indent", 2)
    kwargs.setdefault("sort_keys", True)
    return json.dumps(encode_nonfinite(obj), allow_nan=False, **kwargs)
