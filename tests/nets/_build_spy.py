"""A spy on `build_network` shared by the convert and native-format tests."""

from __future__ import annotations

import torch


def record_build_devices(monkeypatch) -> list[str]:
    """The default device of every build_network call (meta = nothing allocated)."""
    import sidbench.nets.build as build

    devices: list[str] = []
    real = build.build_network

    def spy(config):
        devices.append(torch.get_default_device().type)
        return real(config)

    monkeypatch.setattr(build, "build_network", spy)
    return devices
