"""Checks for a method's settings fields: one-line errors that name the method and the field.

Settings arrive from YAML recipes and `--set key=value`, so a string, a bool or a NaN can reach a
numeric field; each must be refused by name before training starts, not surface as a wrong number.
"""

from __future__ import annotations

import math
from typing import Any

from sidbench.errors import ConfigError


def check_number(method: str, name: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, integer: bool = False) -> None:
    """Refuse a non-number, a non-finite number or one outside [low, high] (open ends as given)."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ConfigError(f"method {method}: setting '{name}' must be {kind}, not {value!r}",
                          hint=f"set {name} to {kind} in method_settings")
    if not math.isfinite(value):
        raise ConfigError(f"method {method}: setting '{name}' must be finite, not {value!r}",
                          hint=f"set {name} to a finite number")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        span = f"{left}{lo}, {hi}{right}"
        raise ConfigError(f"method {method}: setting '{name}' = {value!r} is outside {span}",
                          hint=f"choose {name} in {span}")
