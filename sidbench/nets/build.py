"""Network config (EDM's `class_name` + `init_kwargs`, JSON-safe) <-> network.

The config is what EDM's pickles record as `init_kwargs`, so an official network's
config is read once at conversion and every later load is plain construction plus a
strict state-dict load. JSON has no infinity: non-finite floats are stored as the
strings "inf" / "-inf" / "nan" (sidbench.jsonsafe) and turned back into floats here.
A config read from a file is checked before anything is built: counts must be
integers in a plausible range (a meta-device build of a huge count would still
take forever), NaN is never a valid setting, and infinity only as sigma_max.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import torch

from sidbench.errors import ConfigError
from sidbench.jsonsafe import decode_nonfinite, encode_nonfinite
from sidbench.nets import eps_unet as _eps_unet  # noqa: F401  (registers EpsDenoiser)
from sidbench.nets.precond import PRECONDITIONERS, Precond
from sidbench.registry import suggest

_REQUIRED = ("img_resolution", "img_channels")
# Integer settings -> (smallest, largest) accepted; far beyond any released network.
_COUNTS = {
    "img_resolution": (1, 1 << 14), "img_channels": (1, 1 << 12), "label_dim": (0, 1 << 20),
    "augment_dim": (0, 1 << 12), "model_channels": (1, 1 << 20), "num_blocks": (0, 256),
    "channel_mult_emb": (1, 1 << 10), "channel_mult_noise": (1, 1 << 10), "hidden": (1, 1 << 20),
    "num_layers": (1, 256), "noise_channels": (1, 1 << 20),
}
_COUNT_LISTS = {"channel_mult": (1, 1 << 10, 16), "attn_resolutions": (1, 1 << 14, 64)}  # (lo, hi, length)
_FRACTIONS = ("dropout", "label_dropout")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_values(kwargs: Mapping[str, Any]) -> None:
    """Refuse settings that would build a wrong network silently or not finish building."""
    def walk(value: Any, where: str) -> None:
        if isinstance(value, float) and math.isnan(value):
            raise ConfigError(f"init_kwargs{where} is NaN", hint="give a number")
        if isinstance(value, float) and math.isinf(value) and not (where == "['sigma_max']" and value > 0):
            raise ConfigError(f"init_kwargs{where} is {value}", hint="only sigma_max may be inf")
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{where}[{k!r}]")
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")

    walk(dict(kwargs), "")
    for key, (lo, hi) in _COUNTS.items():
        if key in kwargs and not (_is_int(kwargs[key]) and lo <= kwargs[key] <= hi):
            raise ConfigError(f"init_kwargs['{key}'] = {kwargs[key]!r} must be an integer from {lo} to {hi}",
                              hint="fix the network config")
    for key, (lo, hi, length) in _COUNT_LISTS.items():
        value = kwargs.get(key)
        if value is not None and not (isinstance(value, list | tuple) and len(value) <= length
                                      and all(_is_int(v) and lo <= v <= hi for v in value)):
            raise ConfigError(f"init_kwargs['{key}'] = {value!r} must be a list of at most {length} integers "
                              f"from {lo} to {hi}", hint="fix the network config")
    for key in _FRACTIONS:
        value = kwargs.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not 0 <= value <= 1):
            raise ConfigError(f"init_kwargs['{key}'] = {value!r} must be a probability in [0, 1]",
                              hint="e.g. 0.13 (EDM's CIFAR-10 teacher)")
    if "use_fp16" in kwargs and not isinstance(kwargs["use_fp16"], bool):
        raise ConfigError(f"init_kwargs['use_fp16'] = {kwargs['use_fp16']!r} must be true or false",
                          hint="fix the network config")
    value = kwargs.get("sigma_data")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
        raise ConfigError(f"init_kwargs['sigma_data'] = {value!r} must be a number > 0", hint="EDM uses 0.5")


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
    """Construct (fresh random weights, train mode) the network a config describes.

    Under `with torch.device("meta"):` this allocates nothing: the way to learn a
    config's tensor names and shapes before trusting it with memory.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"network config must be a mapping, not {type(config).__name__}",
                          hint="expected {'class_name': ..., 'init_kwargs': {...}}")
    unknown = sorted(set(config) - {"class_name", "init_kwargs"})
    if unknown:
        did_you_mean = suggest(str(unknown[0]), ["init_kwargs"])
        raise ConfigError(f"unknown key '{unknown[0]}' in network config.{did_you_mean}",
                          hint="a network config has only 'class_name' and 'init_kwargs'")
    cls = PRECONDITIONERS[_class_name(config)]
    kwargs = config.get("init_kwargs")
    if not isinstance(kwargs, Mapping):
        raise ConfigError("network config has no 'init_kwargs' mapping", hint="add the constructor arguments")
    kwargs = decode_nonfinite(dict(kwargs))
    for key in _REQUIRED:
        if key not in kwargs:
            raise ConfigError(f"network config lacks init_kwargs['{key}']", hint="add it")
    _check_values(kwargs)
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
    return {"class_name": type(net).__name__, "init_kwargs": encode_nonfinite(net.init_kwargs)}
