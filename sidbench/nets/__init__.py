"""EDM-compatible networks and preconditioning.

Names are imported on first access, so `import sidbench.nets.<module>` stays cheap
and no sibling module is loaded eagerly.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_network": "sidbench.nets.build",
    "network_config": "sidbench.nets.build",
    "EDMPrecond": "sidbench.nets.precond",
    "VPPrecond": "sidbench.nets.precond",
    "VEPrecond": "sidbench.nets.precond",
    "PRECONDITIONERS": "sidbench.nets.precond",
    "model_class": "sidbench.nets.precond",
    "SongUNet": "sidbench.nets.songunet",
    "DhariwalUNet": "sidbench.nets.dhariwal",
    "PRESETS": "sidbench.nets.presets",
    "preset_config": "sidbench.nets.presets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sidbench.nets' has no attribute '{name}'")
