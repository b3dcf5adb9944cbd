"""The native network format: `network.safetensors` + `network.json` in one folder.

Why: pickles run code when loaded, so every network the harness uses is kept as
plain tensors (safetensors) plus a JSON config that `build_network` turns back
into the architecture. The JSON records the sha256 of the weights, so a file that
was modified or half-copied is refused instead of silently giving wrong numbers.
The JSON is written last: a folder without it (an interrupted save) is not valid.

Loading never allocates what the JSON merely claims: the architecture is first
built on the meta device (no memory) and compared, name by name and shape by shape,
with the safetensors header (read without the tensors); only a match that fits in
memory is built for real. The JSON also says what the network is for (`role`:
"generator" with its `sigma_init`, "teacher", or "network" when not told) and
carries `notes` for the user (e.g. "this looks like a one-step generator").
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sidbench.errors import AssetError, CheckpointError, ConfigError
from sidbench.fileio import atomic_path, atomic_write_text, sha256_file
from sidbench.jsonsafe import decode_nonfinite, dumps, encode_nonfinite

FORMAT = "sidbench.network"
FORMAT_VERSION = 1  # role, sigma_init and notes are optional fields: files without them read as "network"
JSON_NAME = "network.json"
WEIGHTS_NAME = "network.safetensors"
ROLES = ("generator", "t2i-generator", "teacher", "network")  # t2i-generator: SiD-LSG (t_init in source)
CONVERTIBLE_ROLES = ("generator", "teacher", "network")  # what `convert` may record for an EDM network
DEFAULT_SIGMA_INIT = 2.5  # SiD's and SiDA's generators: G(2.5 * z, 2.5)
_SHOW = 5  # how many mismatched names an error lists per kind
_MAX_HEADER = 100 << 20  # a safetensors header beyond this is not a network's
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "F16": 2,
                "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8}

Shapes = Mapping[str, tuple[int, ...]]


# --- config and record fields --------------------------------------------------------------------

def _check_plain(value: Any, where: str) -> None:
    """Refuse what JSON cannot hold (tensors, numpy arrays, objects), naming where it is."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_plain(v, f"{where}.{k}")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    raise ConfigError(f"{where} holds a {type(value).__name__}, which a network config cannot store",
                      hint="use only numbers, strings, booleans, lists and dicts in network configs")


def jsonable(value: Any, where: str = "config") -> Any:
    """`value` in JSON form (non-finite floats as "inf"/"-inf"/"nan"); other non-JSON types refused."""
    _check_plain(value, where)
    return encode_nonfinite(value)


def _config_of(config: dict) -> dict:
    if not isinstance(config, dict) or "class_name" not in config or "init_kwargs" not in config:
        raise ConfigError("a network config must be a dict with 'class_name' and 'init_kwargs'",
                          hint="pass what sidbench.nets.build.network_config(net) returns")
    return {"class_name": str(config["class_name"]), "init_kwargs": jsonable(config["init_kwargs"])}


def check_role(role: str | None, sigma_init: float | None) -> tuple[str, float | None]:
    """(role, sigma_init) to record: role defaults to "network"; a generator's sigma_init to 2.5.

    sigma_init belongs to one-step generators only, and must be a finite number > 0.
    """
    if role is None:
        role = "network"
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}", hint=f"use one of {', '.join(ROLES)}")
    if role != "generator":
        if sigma_init is not None:
            raise ConfigError(f"sigma_init is the noise level of a one-step generator, not of a {role}",
                              hint="add role generator (--role generator), or drop sigma_init")
        return role, None
    if sigma_init is None:
        return role, DEFAULT_SIGMA_INIT
    if isinstance(sigma_init, bool) or not isinstance(sigma_init, (int, float)):
        raise ConfigError(f"sigma_init {sigma_init!r} is not a number", hint="SiD's generators use 2.5")
    if not (math.isfinite(sigma_init) and sigma_init > 0):
        raise ConfigError(f"sigma_init {sigma_init!r} must be a finite number > 0",
                          hint="SiD's generators use 2.5")
    return role, float(sigma_init)


def check_student_sigmas(levels: Any) -> tuple[float, ...]:
    """A multi-step student's noise levels as floats: a non-empty list of finite numbers > 0, strictly
    decreasing (largest first). Recorded as `student_sigmas` by ADD-style products."""
    hint = "list the student's noise levels from the largest down, e.g. [80, 4.08, 1.61, 0.693]"
    if isinstance(levels, (str, bytes)) or not isinstance(levels, (list, tuple)) or not levels:
        raise ConfigError(f"student_sigmas must be a non-empty list of numbers, not {levels!r}", hint=hint)
    out = []
    for v in levels:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ConfigError(f"student_sigmas holds {v!r}, not a finite number > 0", hint=hint)
        out.append(float(v))
    if any(b >= a for a, b in zip(out, out[1:], strict=False)):
        raise ConfigError(f"student_sigmas {out} must decrease strictly", hint=hint)
    return tuple(out)


def _check_levels(levels: Any, role: str, sigma_init: float | None) -> list[float] | None:
    """`student_sigmas` to record: a generator's, whose first level is its sigma_init; None stays None."""
    if levels is None:
        return None
    if role != "generator":
        raise ConfigError(f"student_sigmas are the noise levels of a multi-step student, not of a {role}",
                          hint="record them with role generator")
    out = check_student_sigmas(levels)
    if sigma_init is None or not math.isclose(out[0], sigma_init, rel_tol=1e-9):
        raise ConfigError(f"student_sigmas start at {out[0]:g}, but sigma_init is {sigma_init}: one step of "
                          "the student is its first level", hint="record sigma_init = student_sigmas[0]")
    return list(out)


def _check_notes(notes: Any) -> list[str]:
    if notes is None:
        return []
    if not isinstance(notes, (list, tuple)) or not all(isinstance(n, str) for n in notes):
        raise ConfigError("notes must be a list of strings", hint="pass e.g. notes=['...']")
    return list(notes)


# --- writing -----------------------------------------------------------------------------------------

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
                 source: dict | None = None, *, role: str | None = None, sigma_init: float | None = None,
                 notes: list[str] | None = None, student_sigmas: list[float] | None = None) -> Path:
    """Write `net` as a native folder; returns the path of its `network.json`.

    `role` ("generator", "teacher" or "network", the default) and a generator's
    `sigma_init` (2.5 unless given) tell `generate` / `eval --generator` how to sample
    it; `notes` are shown to the user. A multi-step student (ADD-style) also records its
    `student_sigmas` (largest first; sigma_init, default the first level, must equal it), which
    `generate` / `eval --generator --student-steps N` sample at. An existing `network.json` is
    removed first, so a save that fails midway never leaves a folder that looks valid with other
    weights.
    """
    from safetensors.torch import save_file

    cfg = _config_of(config)
    if student_sigmas is not None and sigma_init is None and role == "generator":
        sigma_init = check_student_sigmas(student_sigmas)[0]
    role, sigma_init = check_role(role, sigma_init)
    levels = _check_levels(student_sigmas, role, sigma_init)
    note_list = _check_notes(notes)
    source_json = jsonable(source, "source") if source is not None else None
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
        "role": role,
        "sigma_init": sigma_init,
        "notes": note_list,
        "source": source_json,
    }
    if levels is not None:  # only multi-step students carry the field
        record["student_sigmas"] = levels
    atomic_write_text(json_path, dumps(record) + "\n")
    return json_path


# --- reading network.json ------------------------------------------------------------------------------

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


def _bare_constant(name: str) -> Any:
    spelling = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}.get(name, name)
    raise ValueError(f"bare {name} (this format spells it as the string \"{spelling}\")")


def _bad(json_path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{json_path}: {what}", hint="re-convert the network with `sidbench convert`")


def _read_record(json_path: Path) -> dict:
    """The validated, normalised record (role, sigma_init and notes always present)."""
    try:
        record = json.loads(json_path.read_text(encoding="utf-8"), parse_constant=_bare_constant)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"{json_path} is not valid JSON ({exc})",
                              hint="re-convert the network with `sidbench convert`") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{json_path} is not a sidbench network file (format != {FORMAT!r})",
                              hint="give the network.json written by `sidbench convert` or save_network()")
    version = record.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(f"{json_path} has format_version {version!r}; this sidbench reads "
                              f"1 to {FORMAT_VERSION}", hint="upgrade sidbench, or re-convert the network")
    for key in ("class_name", "init_kwargs", "weights_file", "weights_sha256"):
        if key not in record:
            raise CheckpointError(f"{json_path} lacks the field {key!r}", hint="re-convert the network")
    types = {"class_name": str, "init_kwargs": dict, "weights_file": str, "weights_sha256": str}
    for key, kind in types.items():
        if not isinstance(record[key], kind):
            raise _bad(json_path, f"{key} is a {type(record[key]).__name__}, not a {kind.__name__}")
    if not re.fullmatch(r"[0-9a-f]{64}", record["weights_sha256"]):
        raise _bad(json_path, f"weights_sha256 {record['weights_sha256'][:70]!r} is not a sha256 hex digest")
    if record.get("source") is not None and not isinstance(record["source"], dict):
        raise _bad(json_path, "source is not an object")
    sigma_init = decode_nonfinite(record.get("sigma_init"))  # "nan"/"inf" then fail check_role
    try:
        role, sigma_init = check_role(record.get("role"), sigma_init)
        notes = _check_notes(record.get("notes"))
        levels = _check_levels(record.get("student_sigmas"), role, sigma_init)
    except ConfigError as exc:
        raise _bad(json_path, exc.message) from None
    return {**record, "role": role, "sigma_init": sigma_init, "notes": notes, "student_sigmas": levels}


def read_network_config(path: str | os.PathLike) -> dict:
    """`{"class_name", "init_kwargs"}` of a native network (JSON form: inf stored as "inf")."""
    record = _read_record(_json_path(path))
    return {"class_name": record["class_name"], "init_kwargs": record["init_kwargs"]}


def read_network_record(path: str | os.PathLike) -> dict:
    """The whole `network.json`, validated: config, weights digest, source, and always `role`
    ("generator" / "teacher" / "network"), `sigma_init` (a float for generators, else None),
    `notes` (a list of strings) and `student_sigmas` (a multi-step student's levels, else None),
    also for files written before these fields existed."""
    return _read_record(_json_path(path))


# --- shapes before memory ---------------------------------------------------------------------------------

def read_safetensors_header(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a safetensors file from its header alone (no tensor is read).

    The header's byte ranges must tile the data section exactly and end at the end of
    the file, so a truncated, padded or corrupt file is a CheckpointError here.
    """
    p = Path(path)

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{p} cannot be read as safetensors ({why})",
                               hint="the file is truncated or corrupt; re-convert or copy it again")

    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad(f"{size} bytes, shorter than a header")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, _MAX_HEADER):
            raise bad(f"header length {n} does not fit in the {size}-byte file")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_bare_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    shapes: dict[str, tuple[int, ...]] = {}
    ranges = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        ok = (isinstance(entry, dict) and entry.get("dtype") in _DTYPE_BYTES
              and isinstance(entry.get("shape"), list) and isinstance(entry.get("data_offsets"), list)
              and len(entry["data_offsets"]) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                      for v in entry["shape"] + entry["data_offsets"]))
        if not ok:
            raise bad(f"entry {name!r} is not a tensor description")
        begin, end = entry["data_offsets"]
        if end - begin != math.prod(entry["shape"]) * _DTYPE_BYTES[entry["dtype"]]:
            raise bad(f"{name} has {end - begin} bytes for shape {entry['shape']} of {entry['dtype']}")
        shapes[name] = tuple(entry["shape"])
        ranges.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(ranges):
        if begin != position:
            raise bad(f"{name} starts at byte {begin}, expected {position}")
        position = end
    if position != size - 8 - n:
        raise bad(f"header describes {position} data bytes, the file holds {size - 8 - n}")
    return shapes


def planned_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor the config's network has, built on the meta device (no memory)."""
    from sidbench.nets.build import build_network

    with torch.device("meta"):
        net = build_network(config)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return shown + (", ..." if len(names) > _SHOW else "")


def check_shapes(expected: Shapes, stored: Shapes, what: str) -> None:
    """Raise CheckpointError naming missing / unexpected / wrongly shaped tensors (strict loading)."""
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    shapes = [f"{k} {tuple(stored[k])} vs {tuple(v)}" for k, v in expected.items()
              if k in stored and tuple(stored[k]) != tuple(v)]
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


def check_state_dict(net: torch.nn.Module, tensors: Mapping[str, torch.Tensor], what: str) -> None:
    """`check_shapes` for a built network and a dict of tensors."""
    check_shapes({k: tuple(v.shape) for k, v in net.state_dict().items()},
                 {k: tuple(v.shape) for k, v in tensors.items()}, what)


def available_memory(device: torch.device) -> int | None:
    """Bytes free on `device` (CPU: MemAvailable), or None where it cannot be told."""
    if device.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.3g} {unit}" if unit != "bytes" else f"{int(n)} bytes"
        n /= 1024
    return f"{n:,.3g} TiB"


def check_fits(shapes: Shapes, what: str, device: torch.device | None = None, copies: int = 2) -> None:
    """Refuse a network whose float32 tensors (`copies` of them in CPU memory) cannot fit.

    Loading holds the file's tensors and the built network at once (2 copies); a
    conversion that already holds the tensors builds one more.
    """
    device = device if device is not None else torch.device("cpu")
    values = sum(math.prod(s) for s in shapes.values())
    need = values * 4 * copies
    targets = [torch.device("cpu")] + ([device] if device.type != "cpu" else [])
    for target in targets:
        free = available_memory(target)
        want = need if target.type == "cpu" else values * 4
        if free is not None and want > free:
            raise CheckpointError(
                f"{what} describes a network of {values:,} tensor values; building it needs about "
                f"{_size(want)} of {target.type} memory, but {_size(free)} is available",
                hint="free memory or use a larger machine; if the size is unexpected, check the config's "
                     "init_kwargs (model_channels, channel_mult, num_blocks)")


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


def _config_planned(config: dict, where: Path) -> dict[str, tuple[int, ...]]:
    try:
        return planned_shapes(config)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from None


def load_network(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build the network a native folder describes and load its weights strictly; eval mode.

    Checked before anything large is allocated: the weights' sha256, the safetensors
    header against the architecture built on the meta device, and the memory it needs.
    """
    from sidbench.nets.build import build_network

    device = torch.device(device)
    json_path = _json_path(path)
    record = _read_record(json_path)
    name = record["weights_file"]
    if Path(name).name != name or name in ("", ".", ".."):
        raise CheckpointError(f"{json_path}: weights_file {name!r} must be a file name in the same folder",
                              hint="re-convert the network")
    weights = json_path.parent / name
    if not weights.is_file():
        raise AssetError(f"{weights} is missing (named by {json_path})",
                         hint="copy the whole network folder, or re-convert with `sidbench convert`")
    digest = sha256_file(weights)
    if digest != record["weights_sha256"]:
        raise CheckpointError(f"{weights} is corrupt or modified: sha256 {digest[:16]}... != "
                              f"{record['weights_sha256'][:16]}... recorded in {json_path.name}",
                              hint="re-convert the network (or copy the folder again)")
    config = {"class_name": record["class_name"], "init_kwargs": record["init_kwargs"]}
    planned = _config_planned(config, json_path)
    check_shapes(planned, read_safetensors_header(weights), str(weights))
    check_fits(planned, str(json_path), device)
    tensors = load_tensors(weights)
    net = build_network(config)
    check_state_dict(net, tensors, str(weights))
    net.load_state_dict(tensors, strict=True)
    del tensors
    return net.to(device).eval()
