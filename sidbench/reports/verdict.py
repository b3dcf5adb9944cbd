"""Measured vs paper: the verdict of a run's newest evaluation against its recipe's `expected:` entries.

A recipe states, for each number to reproduce, the paper, the metric, the protocol, the value and a
tolerance (absolute, in the metric's units: `tolerance: 0.05` FID). The verdict is

- **pass**: measured under the stated protocol, with the protocol's full image count and seeds, and
  |measured - paper| <= tolerance;
- **fail**: comparable, but outside the tolerance (worse, or better: a number much better than the
  paper's is as suspect as a worse one), or not finite;
- **not comparable**: another protocol, or the stated one run off its settings (fewer images, other
  seeds: the record's `full_protocol` is false and its `protocol_deviations` say how), or the recipe
  states no usable tolerance;
- **not measured**: the run has no evaluation of that metric.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PASS, FAIL, NOT_COMPARABLE, NOT_MEASURED = "pass", "fail", "not comparable", "not measured"
VERDICTS = (PASS, FAIL, NOT_COMPARABLE, NOT_MEASURED)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one comparison and the one-line reason shown beside it."""

    status: str
    reason: str
    measured: float | None = None
    paper: float | None = None
    tolerance: float | None = None
    delta: float | None = None  # measured - paper
    protocol: str | None = None  # the measured protocol, name@version


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def judge(expected: Mapping[str, Any], record: Mapping[str, Any] | None) -> Verdict:
    """The verdict of `record` (a result record, or None) against one `expected:` entry of a recipe."""
    from sidbench.leaderboards.table import number

    key = str(expected.get("metric") or "fid")
    paper = _number(expected.get("value"))
    tol = _number(expected.get("tolerance"))
    want = expected.get("protocol")
    entry = (record or {}).get("metrics", {}).get(key) if record is not None else None
    if entry is None:
        return Verdict(NOT_MEASURED, f"the run has no {key} evaluation", paper=paper, tolerance=tol)
    measured = number(entry["value"])
    proto = entry["protocol"]
    name = f"{proto['name']}@{proto['version']}"
    base = {"measured": measured, "paper": paper, "tolerance": tol, "protocol": name}
    if paper is None:
        return Verdict(NOT_COMPARABLE, "the recipe's expected entry has no numeric value", **base)
    if want and proto["name"] != want:
        why = f"measured under {proto['name']}, the paper's number is {want}"
        return Verdict(NOT_COMPARABLE, why, **base)
    if entry.get("full_protocol") is False:
        why = "; ".join(entry.get("protocol_deviations") or []) or "run off the protocol's settings"
        return Verdict(NOT_COMPARABLE, f"off protocol: {why}", **base)
    if tol is None or not math.isfinite(tol) or tol < 0:
        return Verdict(NOT_COMPARABLE, "the recipe states no tolerance for this number", **base)
    if not math.isfinite(measured):
        return Verdict(FAIL, f"the measured value is {measured}", **base)
    delta = measured - paper
    base["delta"] = delta
    if abs(delta) <= tol:
        return Verdict(PASS, f"within \u00b1{tol:g} of the paper ({delta:+.4g})", **base)
    lower = bool(entry.get("lower_is_better", True))
    better = (delta < 0) == lower
    return Verdict(FAIL, f"{'better' if better else 'worse'} than the paper by {abs(delta):.4g} "
                         f"(tolerance \u00b1{tol:g})", **base)
