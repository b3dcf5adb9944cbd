"""One parser for `--device`: a clear error instead of a traceback for a device that is not there."""

from __future__ import annotations

import torch

from sidbench.errors import ConfigError


def parse_device(name: str | torch.device | None, default: str = "cpu") -> torch.device:
    """`cpu`, `cuda`, `cuda:N` (or a torch.device) -> torch.device, checked against this machine."""
    if name is None:
        name = default
    if isinstance(name, torch.device):
        device = name
    else:
        try:
            device = torch.device(str(name))
        except (RuntimeError, ValueError):
            raise ConfigError(f"unknown device '{name}'", hint="use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{name}' asked but no CUDA device is available",
                              hint="use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device '{name}' does not exist: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)", hint="use cuda:0 .. cuda:N-1")
    elif device.type not in ("cpu", "mps"):
        raise ConfigError(f"device '{name}' is not supported", hint="use cpu, cuda or cuda:N")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device '{name}' asked but MPS is not available", hint="use --device cpu")
    return device


def default_device() -> torch.device:
    """cuda when available, else cpu."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
