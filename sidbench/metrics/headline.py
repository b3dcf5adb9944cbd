"""Headline rules: how the values of several seed sets become the one number a protocol reports.

Applied exactly as named, or refused: "min"/"max" (EDM: minimum FID over three seed sets), "mean"
(the default where a protocol names none; the spread is recorded too), "single" (exactly one
seed set) and "best-checkpoint" (SiD's in-training FID: the best over a run's checkpoints, which
one generator's seed sets cannot give).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sidbench.errors import ConfigError
from sidbench.metrics.protocols import Protocol


def headline_rule(p: Protocol) -> str:
    return str(p.option("headline", "mean"))


def check_applicable(p: Protocol, num_seed_sets: int) -> None:
    """Refuse, before any work, a rule that these seed sets cannot satisfy."""
    rule = headline_rule(p)
    if rule == "best-checkpoint":
        raise ConfigError(f"protocol {p.name} reports the best checkpoint of a training run; seed sets of "
                          "one generator cannot give that number",
                          hint="evaluate each checkpoint (sidbench eval) and take the best, or use another "
                               "protocol, e.g. edm-fid50k")
    if rule == "single" and num_seed_sets != 1:
        raise ConfigError(f"protocol {p.name} reports a single seed set, {num_seed_sets} were given",
                          hint="evaluate one seed set (sidbench eval --seeds)")
    if num_seed_sets < 1:
        raise ConfigError("no seed sets given", hint="e.g. [(0, 49999)]")


def combine(p: Protocol, values: Sequence[float]) -> tuple[str, float]:
    """(rule, headline value) of `values` under `p`'s rule (call `check_applicable` first)."""
    rule = headline_rule(p)
    check_applicable(p, len(values))
    if rule == "min":
        return rule, float(min(values))
    if rule == "max":
        return rule, float(max(values))
    if rule == "single":
        return rule, float(values[0])
    if rule == "mean":
        return rule, float(np.mean(values))
    raise ConfigError(f"protocol {p.name}: unknown headline rule {rule!r}")  # refused at definition already
