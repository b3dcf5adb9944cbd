"""The native network format: `network.safetensors` + `network.json` in one folder.

Why: pickles run code when loaded, so every network the harness uses is kept as
plain tensors (safetensors) plus a JSON config that `build_network` turns back
into the architecture. The JSON records the sha256 of the weights, so a file that
was modified or half-copied is refused instead of silently giving wrong numbers.
The JSON is written last: a folder without it (an interrupted save) is not valid.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from sidbench.errors import AssetError, CheckpointError, ConfigError
from sidbench.fileio import atomic_path, atomic_write_text, sha256_file

FORMAT = "sidbench.network"
FORMAT_VERSION = 1
JSON_NAME = "network.json"
WEIGHTS_NAME = "network.safetensors"
_SHOW = 5  # how many mismatched names an error lists per kind


def to_jsonable(value: Any, where: str = "config") -> Any:
    """Plain JSON types; non-finite floats become the strings "inf"/"-inf"/"nan" (JSON has none)."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ConfigError(f"{where} holds a {type(value).__name__}, which a network config cannot store",
                      hint="use only numbers, strings, booleans, lists and dicts in network configs")


def _config_of(config: dict) -> dict:
    if not isinstance(config, dict) or "class_name" not in config or "init_kwargs" not in config:
        raise ConfigError("a network config must be a dict with 'class_name' and 'init_kwargs'",
                          hint="pass what sidbench.nets.build.network_config(net) returns")
    return {"class_name": str(config["class_name"]), "init_kwargs": to_jsonable(config["init_kwargs"])}


def _weights_tensors(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and persistent buffer (what strict loading checks), as contiguous CPU tensors."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in net.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.numel() > 0:
            t = t.clone()  # safetensors refuses tensors that share memory
        seen.add(ptr)
        out[name] = t
    return out


def save_network(net: torch.nn.Module, config: dict, out_dir: str | os.PathLike,
                 source: dict | None = None) -> Path:
    """Write `net` as a native folder; returns the path of its `network.json`.

    An existing `network.json` is removed first, so a save that fails midway never
    leaves a folder that looks valid with other weights in it.
    """
    from safetensors.torch import save_file

    cfg = _config_of(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / JSON_NAME
    json_path.unlink(missing_ok=True)
    tensors = _weights_tensors(net)
    with atomic_path(out / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        digest = sha256_file(tmp)
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class_name": cfg["class_name"],
        "init_kwargs": cfg["init_kwargs"],
        "weights_file": WEIGHTS_NAME,
        "weights_sha256": digest,
        "source": to_jsonable(source, "source") if source is not None else None,
    }
    atomic_write_text(json_path, json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return json_path


def _json_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / JSON_NAME
    elif p.suffix == ".safetensors":
        p = p.parent / JSON_NAME
    if not p.is_file():
        raise AssetError(f"no network found at {path} (expected {p})",
                         hint="give a folder written by `sidbench convert` or save_network(), "
                              "or its network.json")
    return p


def _read_record(json_path: Path) -> dict:
    try:
        record = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{json_path} is not valid JSON ({exc})",
                              hint="re-convert the network with `sidbench convert`") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{json_path} is not a sidbench network file (format != {FORMAT!r})",
                              hint="give the network.json written by `sidbench convert` or save_network()")
    version = record.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{json_path} has format_version {version!r}; this sidbench reads "
                              f"up to {FORMAT_VERSION}", hint="upgrade sidbench")
    for key in ("class_name", "init_kwargs", "weights_file", "weights_sha256"):
        if key not in record:
            raise CheckpointError(f"{json_path} lacks the field {key!r}", hint="re-convert the network")
    return record


def read_network_config(path: str | os.PathLike) -> dict:
    """`{"class_name", "init_kwargs"}` of a native network (JSON form: inf stored as "inf")."""
    record = _read_record(_json_path(path))
    return {"class_name": record["class_name"], "init_kwargs": record["init_kwargs"]}


def read_network_record(path: str | os.PathLike) -> dict:
    """The whole `network.json` (config, weights digest, source) of a native network."""
    return _read_record(_json_path(path))


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return shown + (", ..." if len(names) > _SHOW else "")


def check_state_dict(net: torch.nn.Module, tensors: dict[str, torch.Tensor], what: str) -> None:
    """Raise CheckpointError naming missing / unexpected / wrongly shaped tensors (strict loading)."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    shapes = [f"{k} {tuple(tensors[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in tensors and tuple(tensors[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing: {_names(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected: {_names(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} with another shape (stored vs built): {_names(shapes)}")
    raise CheckpointError(f"{what} does not match the architecture in its config: " + "; ".join(parts),
                          hint="the config and the weights come from different networks; re-convert")


def load_tensors(weights: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file on CPU; a truncated or corrupt file is a CheckpointError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{weights} cannot be read as safetensors ({msg})",
                              hint="the file is truncated or corrupt; re-convert or copy it again") from None


def load_network(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build the network a native folder describes and load its weights strictly; eval mode."""
    from sidbench.nets.build import build_network

    json_path = _json_path(path)
    record = _read_record(json_path)
    name = str(record["weights_file"])
    if Path(name).name != name:
        raise CheckpointError(f"{json_path}: weights_file {name!r} must be a file name in the same folder",
                              hint="re-convert the network")
    weights = json_path.parent / name
    if not weights.is_file():
        raise AssetError(f"{weights} is missing (named by {json_path})",
                         hint="copy the whole network folder, or re-convert with `sidbench convert`")
    digest = sha256_file(weights)
    if digest != record["weights_sha256"]:
        raise CheckpointError(f"{weights} is corrupt or modified: sha256 {digest[:16]}... != "
                              f"{str(record['weights_sha256'])[:16]}... recorded in {json_path.name}",
                              hint="re-convert the network (or copy the folder again)")
    tensors = load_tensors(weights)
    net = build_network({"class_name": record["class_name"], "init_kwargs": record["init_kwargs"]})
    check_state_dict(net, tensors, str(weights))
    net.load_state_dict(tensors, strict=True)
    return net.to(device).eval()
