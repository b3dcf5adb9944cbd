"""Convert plain torch state dicts (DMD2's releases) into the native format.

A state dict carries no architecture, so the caller names it: a config file
(`{class_name, init_kwargs}`, e.g. a network.json) or a preset from
`sidbench.nets.presets`. The file is read with `torch.load(weights_only=True)`
(or safetensors), which cannot run code. Wrapper prefixes left by DDP,
torch.compile or DMD2's training wrapper are stripped.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from sidbench.errors import AssetError, CheckpointError, ConfigError

FORMAT = "torch-state-dict"
PREFIXES = ("module.", "_orig_mod.", "feedforward_model.")


def strip_prefixes(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes shared by every key (repeatedly: 'module.feedforward_model.x' -> 'x').

    A whole DMD2 model (generator `feedforward_model.*` next to `guidance_model.*`) keeps
    only the generator.
    """
    generator = "feedforward_model."
    for prefix in ("module.", "_orig_mod."):
        if tensors and all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
    if any(k.startswith(generator) for k in tensors):
        tensors = {k: v for k, v in tensors.items() if k.startswith(generator)}
    changed = True
    while changed and tensors:
        changed = False
        for prefix in PREFIXES:
            if all(k.startswith(prefix) for k in tensors):
                tensors = {k[len(prefix):]: v for k, v in tensors.items()}
                changed = True
    return tensors


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors or torch.save file, read without unpickling arbitrary objects."""
    p = Path(path)
    if not p.is_file():
        raise AssetError(f"{p} does not exist", hint="give the path of the downloaded state dict")
    if p.suffix == ".safetensors":
        from sidbench.nets.native import load_tensors

        return load_tensors(p)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{p} cannot be read as a torch state dict ({msg[:200]})",
                              hint="only plain tensors can be loaded; an EDM .pkl needs --trust-pickle",
                              ) from None
    for key in ("state_dict", "model", "ema"):  # common wrappers around the tensors
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{p} does not hold a flat dict of tensors", hint="give a model state dict")
    return strip_prefixes({str(k): v for k, v in obj.items()})


def _config(config: Any, preset: str | None) -> dict:
    if (config is None) == (preset is None):
        from sidbench.nets.presets import PRESETS

        raise ConfigError("a state dict has no architecture: give exactly one of --config or --preset",
                          hint=f"--config takes a network.json-style file; presets: {', '.join(PRESETS)}")
    if preset is not None:
        from sidbench.nets.presets import preset_config

        return preset_config(preset)
    if isinstance(config, dict):
        return config
    try:
        text = Path(config).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AssetError(f"config file {config} does not exist",
                         hint="give a network.json-style file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {config} cannot be read ({exc})",
                          hint="give a JSON text file") from None
    try:
        data = json.loads(text, parse_constant=_bare_constant)
    except ValueError as exc:  # JSONDecodeError, or a bare NaN/Infinity
        raise ConfigError(f"config file {config} is not valid JSON ({exc})", hint="fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {config} does not hold a JSON object",
                          hint="expected {class_name, init_kwargs}")
    return {"class_name": data.get("class_name"), "init_kwargs": data.get("init_kwargs")}


def _bare_constant(name: str) -> Any:
    raise ValueError(f"bare {name}; write it as a string (\"inf\", \"-inf\", \"nan\")")


def convert_state_dict(path: str | os.PathLike, out_dir: str | os.PathLike, *,
                       config: str | os.PathLike | dict | None = None, preset: str | None = None,
                       role: str | None = None, sigma_init: float | None = None) -> Path:
    """Convert a plain state dict into a native folder (strict load against the named architecture).

    The tensors are compared with the architecture built on the meta device before
    the network is allocated. `role` and a generator's `sigma_init` are recorded as in
    `convert_pickle`.
    """
    from sidbench.fileio import sha256_file
    from sidbench.nets.build import build_network
    from sidbench.nets.native import check_fits, check_role, check_shapes, planned_shapes, save_network

    p = Path(path)
    role, sigma_init = check_role(role, sigma_init)
    cfg = _config(config, preset)
    planned = planned_shapes(cfg)  # a bad config fails before the file is read
    tensors = read_state_dict(p)
    check_shapes(planned, {k: tuple(v.shape) for k, v in tensors.items()}, p.name)
    check_fits(planned, p.name, copies=1)
    net = build_network(cfg)
    net.load_state_dict(tensors, strict=True)
    source = {"file": p.name, "sha256": sha256_file(p), "format": FORMAT, "preset": preset}
    return save_network(net, cfg, out_dir, source=source, role=role, sigma_init=sigma_init)
