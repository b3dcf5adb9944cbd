"""The `generate.json` manifest: which network and settings made an output, and which seeds it holds.

Resuming or extending an output is allowed only with the same network fingerprint
and settings, so one folder never mixes two distributions. `seeds` lists only the
images the output holds when the manifest is written, never ones still to come.
Non-finite floats are written with `sidbench.jsonsafe` ("inf", never NaN as "-inf").
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from sidbench import jsonsafe
from sidbench.errors import ConfigError
from sidbench.fileio import atomic_write_text
from sidbench.nets.seeds import format_seeds

MANIFEST = "generate.json"
FORMAT = "sidbench.generation"
FORMAT_VERSION = 1
_HEUN_KEYS = ("num_steps", "sigma_min", "sigma_max", "rho", "S_churn", "S_min", "S_max", "S_noise")


def network_fingerprint(net: torch.nn.Module) -> str:
    """sha256 over parameter/buffer names, dtypes, shapes and values: which weights made the images."""
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def build_manifest(net: torch.nn.Module, sampler: str, device: torch.device, class_idx: int | None,
                   settings: dict[str, Any], network_info: dict | None = None,
                   student_sigmas: Sequence[float] | None = None) -> dict[str, Any]:
    """The manifest (without seeds) as it reads back from disk, so it compares with a stored one.

    `settings` is what `check_sampler_settings` returned; only those the sampler uses are kept.
    A multi-step student's levels (`student_sigmas`) are recorded only when given, so one-step
    manifests are unchanged.
    """
    recorded: dict[str, Any] = {
        "sampler": sampler,
        "image_shape": [int(net.img_channels), int(net.img_resolution), int(net.img_resolution)],
        "label_dim": int(getattr(net, "label_dim", 0) or 0),
        "class_idx": None if class_idx is None else int(class_idx),
        "device_type": device.type,
        "quantize": "edm: (x*127.5+128).clip(0,255) -> uint8, float64",
        "seed_convention": "edm StackedRandomGenerator: latent, class, sampler noise",
    }
    if sampler == "heun":
        recorded.update({k: settings[k] for k in _HEUN_KEYS})
    else:
        recorded["sigma_init"] = settings["sigma_init"]
        if student_sigmas is not None:
            recorded["student_sigmas"] = [float(v) for v in student_sigmas]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "settings": recorded,
        "network": {"fingerprint": network_fingerprint(net), **(network_info or {})},
    }
    return json.loads(jsonsafe.dumps(manifest))


def build_t2i_manifest(net: torch.nn.Module, settings: dict[str, Any],
                       network_info: dict | None = None) -> dict[str, Any]:
    """A text-to-image output's manifest (without seeds): `settings` as given (sampler, captions sha256,
    teacher sha256, t_init or DDIM steps and guidance), `net`'s weights fingerprinted."""
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "settings": {**settings,
                     "quantize": "edm: (x*127.5+128).clip(0,255) -> uint8, float64",
                     "seed_convention": "StackedRandomGenerator per seed: latent; caption s with seed s"},
        "network": {"fingerprint": network_fingerprint(net), **(network_info or {})},
    }
    return json.loads(jsonsafe.dumps(manifest))


def with_seeds(manifest: dict[str, Any], seeds: Iterable[int]) -> dict[str, Any]:
    """A copy of `manifest` that claims exactly `seeds` ("" for none)."""
    return {**manifest, "seeds": format_seeds(sorted(seeds))}


def manifest_text(manifest: dict[str, Any]) -> str:
    return jsonsafe.dumps(manifest) + "\n"


def write_manifest(folder: str | os.PathLike, manifest: dict[str, Any]) -> None:
    atomic_write_text(Path(folder) / MANIFEST, manifest_text(manifest))


def parse_manifest(text: str | bytes, where: str) -> dict[str, Any]:
    """Read and check a manifest's shape; a broken one is a one-line error, not a traceback."""
    hint = f"delete {where} (or its folder) or pass another --out"

    def bad(reason: str) -> ConfigError:
        return ConfigError(f"{where} is not a valid {FORMAT} manifest: {reason}", hint=hint)

    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise bad(f"expected an object, found {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise bad(f"format is {data.get('format')!r}")
    version = data.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise bad(f"format_version is {version!r}")
    if version > FORMAT_VERSION:
        raise ConfigError(f"{where} was written by a newer sidbench (format {version})",
                          hint="upgrade sidbench, or pass another --out")
    if not isinstance(data.get("settings"), dict):
        raise bad("'settings' is not an object")
    network = data.get("network")
    if not isinstance(network, dict) or not isinstance(network.get("fingerprint"), str):
        raise bad("'network.fingerprint' is missing")
    if not isinstance(data.get("seeds", ""), str):
        raise bad("'seeds' is not a string")
    return data


def read_manifest(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of a folder, or None if it has none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}",
                          hint="check its permissions") from None
    return parse_manifest(text, str(path))


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'key: old -> new' for each setting (and the network) in which two manifests differ."""
    diffs = []
    a_settings, b_settings = old["settings"], new["settings"]
    for key in sorted(set(a_settings) | set(b_settings)):
        a, b = a_settings.get(key), b_settings.get(key)
        if a != b:
            diffs.append(f"{key}: {a} -> {b}")
    fa, fb = old["network"]["fingerprint"], new["network"]["fingerprint"]
    if fa != fb:
        diffs.append(f"network: {fa[:12]} -> {fb[:12]}")
    return diffs
