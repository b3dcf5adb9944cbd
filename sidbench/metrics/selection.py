"""What one run computes: metric names (aliases and plugins resolved) and the protocol of each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sidbench.errors import ConfigError
from sidbench.metrics.catalog import canonical_name, get_metric, metric_names
from sidbench.metrics.protocols import Protocol, get_protocol


def parse_metrics(metrics: str | Sequence[str]) -> list[str]:
    """'fid,is' or ['fid', 'is'] -> registered metric names, in order; unknown names get a suggestion."""
    items = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    out: list[str] = []
    for raw in items:
        if not str(raw).strip():
            continue
        m = canonical_name(str(raw))
        if m not in out:
            out.append(m)
    if not out:
        raise ConfigError("no metric asked for", hint=f"choose from {', '.join(metric_names())}")
    return out


def default_protocols(metrics: Sequence[str]) -> dict[str, str]:
    """metric -> the protocol it uses when none is named."""
    return {m: get_metric(m).default_protocol for m in metrics}


def resolve_protocols(metrics: Sequence[str], protocols: str | Sequence[str] | Mapping[str, str] | None
                      ) -> dict[str, Protocol]:
    """metric -> Protocol: named protocols replace the defaults of their metric."""
    chosen = default_protocols(metrics)
    if protocols:
        if isinstance(protocols, Mapping):
            names = list(protocols.values())
        else:
            names = protocols.split(",") if isinstance(protocols, str) else list(protocols)
            names = [n.strip() for n in names if n.strip()]
        for name in names:
            p = get_protocol(name)
            if p.metric not in metrics:
                raise ConfigError(f"protocol '{name}' is for metric '{p.metric}', which was not asked for",
                                  hint=f"add {p.metric} to --metrics or drop the protocol")
            chosen[p.metric] = name
    return {m: get_protocol(n) for m, n in chosen.items()}
