"""Network config (EDM's `class_name` + `init_kwargs`, JSON-safe) <-> network.

The config is what EDM's pickles record as `init_kwargs`, so an official network's
config is read once at conversion and every later load is plain construction plus a
strict state-dict load. JSON has no infinity: non-finite floats are stored as the
strings "inf" / "-inf" / "nan" and turned back into floats here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from sidbench.errors import ConfigError
from sidbench.nets.precond import PRECONDITIONERS, Precond
from sidbench.registry import suggest

_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
_REQUIRED = ("img_resolution", "img_channels")


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in _NONFINITE:
        return _NONFINITE[value.lower()]
    if isinstance(value, list | tuple):
        return [_decode(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _decode(v) for k, v in value.items()}
    return value


def _encode(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


def _class_name(config: Mapping[str, Any]) -> str:
    name = config.get("class_name")
    if not isinstance(name, str):
        raise ConfigError("network config has no 'class_name'",
                          hint=f"use one of {', '.join(PRECONDITIONERS)}")
    short = name.rsplit(".", 1)[-1]  # EDM records 'training.networks.EDMPrecond'
    if short not in PRECONDITIONERS:
        raise ConfigError(f"unknown network class '{name}'.{suggest(short, list(PRECONDITIONERS))}",
                          hint=f"use one of {', '.join(PRECONDITIONERS)}")
    return short


def build_network(config: Mapping[str, Any]) -> torch.nn.Module:
    """Construct (fresh random weights, train mode) the network a config describes."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"network config must be a mapping, not {type(config).__name__}",
                          hint="expected {'class_name': ..., 'init_kwargs': {...}}")
    unknown = sorted(set(config) - {"class_name", "init_kwargs"})
    if unknown:
        did_you_mean = suggest(unknown[0], ["init_kwargs"])
        raise ConfigError(f"unknown key '{unknown[0]}' in network config.{did_you_mean}",
                          hint="a network config has only 'class_name' and 'init_kwargs'")
    cls = PRECONDITIONERS[_class_name(config)]
    kwargs = config.get("init_kwargs")
    if not isinstance(kwargs, Mapping):
        raise ConfigError("network config has no 'init_kwargs' mapping", hint="add the constructor arguments")
    kwargs = _decode(dict(kwargs))
    for key in _REQUIRED:
        if key not in kwargs:
            raise ConfigError(f"network config lacks init_kwargs['{key}']", hint="add it")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot build {cls.__name__}: {exc}", hint="check init_kwargs") from exc


def network_config(net: torch.nn.Module) -> dict[str, Any]:
    """The JSON-safe config that rebuilds `net` (same class, same state-dict keys and shapes)."""
    net = getattr(net, "module", net)  # DistributedDataParallel
    net = getattr(net, "_orig_mod", net)  # torch.compile
    if not isinstance(net, Precond):
        raise ConfigError(f"{type(net).__name__} was not built by sidbench.nets",
                          hint="build it with sidbench.nets.build_network or a preconditioner class")
    return {"class_name": type(net).__name__, "init_kwargs": _encode(net.init_kwargs)}
