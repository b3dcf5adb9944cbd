"""Checkpoints: a folder per step, written whole or not at all, verified file by file before a resume.

Layout of `OUTDIR/checkpoints/step-XXXXXXXX/`:
  networks/<name>.safetensors (+ <name>-ema.safetensors)   weights of every network and EMA
  optimizers.safetensors + optimizers.json                  optimizer tensors / everything else
  product/                                                  the native network folder generate/eval load
  state.json                                                step, kimg, config hash, resolved config,
                                                            sha256 of every other file; written last
The folder is built under a temporary name and renamed into place, and state.json is the
last file written into it, so a folder without a state.json whose hashes match its files
is not a checkpoint. Nothing is pickled: tensors are safetensors, the rest JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from sidbench.errors import CheckpointError
from sidbench.fileio import atomic_path, atomic_write_text, sha256_file
from sidbench.jsonsafe import decode_nonfinite, dumps

FORMAT = "sidbench.checkpoint"
FORMAT_VERSION = 1
CHECKPOINTS = "checkpoints"
STATE = "state.json"
OPTIMIZER_TENSORS = "optimizers.safetensors"
OPTIMIZER_META = "optimizers.json"
PRODUCT = "product"
_STEP_DIR = re.compile(r"^step-(\d{8,})$")


def checkpoint_path(outdir: str | os.PathLike, step: int) -> Path:
    return Path(outdir) / CHECKPOINTS / f"step-{step:08d}"


def module_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of every parameter and buffer (copies: safetensors refuses shared storage)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}


def _save_tensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> str:
    from safetensors.torch import save_file

    with atomic_path(path, fsync=True) as tmp:
        save_file(dict(tensors), str(tmp), metadata={"format": "pt"})
        digest = sha256_file(tmp)
    return digest


def write_checkpoint(outdir: str | os.PathLike, step: int, *, networks: Mapping[str, torch.nn.Module],
                     optimizer_tensors: Mapping[str, torch.Tensor], optimizer_meta: Mapping[str, Any],
                     state: Mapping[str, Any], write_product: Callable[[Path], Any]) -> Path:
    """Write checkpoint `step` and return its folder (an older folder of the same step is replaced)."""
    final = checkpoint_path(outdir, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        files: dict[str, str] = {}
        for name, module in networks.items():
            rel = f"networks/{name}.safetensors"
            files[rel] = _save_tensors(stage / rel, module_tensors(module))
        files[OPTIMIZER_TENSORS] = _save_tensors(stage / OPTIMIZER_TENSORS, optimizer_tensors)
        atomic_write_text(stage / OPTIMIZER_META, dumps(optimizer_meta) + "\n")
        files[OPTIMIZER_META] = sha256_file(stage / OPTIMIZER_META)
        write_product(stage / PRODUCT)
        for path in sorted((stage / PRODUCT).rglob("*")):
            if path.is_file():
                files[path.relative_to(stage).as_posix()] = sha256_file(path)
        record = {"format": FORMAT, "format_version": FORMAT_VERSION, **state, "step": int(step),
                  "networks": sorted(networks), "files": files}
        atomic_write_text(stage / STATE, dumps(record) + "\n")  # last: it makes the folder a checkpoint
        if final.exists():
            shutil.rmtree(final)
        os.replace(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return final


def _bad(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} is not valid: {why}",
                           hint="it was cut short or modified; resume from another checkpoint")


def read_state(path: str | os.PathLike, verify: bool = True) -> dict[str, Any]:
    """The checkpoint's state.json, after checking the sha256 of every file it lists."""
    folder = Path(path)
    if folder.name == STATE:
        folder = folder.parent
    state_file = folder / STATE
    if not state_file.is_file():
        raise _bad(folder, f"no {STATE}")
    try:
        state = decode_nonfinite(json.loads(state_file.read_text(encoding="utf-8")))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(folder, f"{STATE} is not JSON ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise _bad(folder, f"{STATE} is not a sidbench checkpoint state")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {folder} has format_version {state.get('format_version')!r}; "
                              f"this sidbench reads {FORMAT_VERSION}", hint="resume it with the sidbench "
                              "version that wrote it")
    files = state.get("files")
    if not isinstance(files, dict) or not files:
        raise _bad(folder, f"{STATE} lists no files")
    needed = [f"networks/{n}.safetensors" for n in state.get("networks", [])]
    needed += [OPTIMIZER_TENSORS, OPTIMIZER_META, f"{PRODUCT}/network.json"]
    missing = [n for n in needed if n not in files]
    if missing:
        raise _bad(folder, f"{STATE} does not list {missing[0]}")
    if verify:
        for rel, digest in files.items():
            p = folder / rel
            if not p.is_file():
                raise _bad(folder, f"{rel} is missing")
            if sha256_file(p) != digest:
                raise _bad(folder, f"{rel} does not match its sha256 in {STATE}")
    return state


def list_checkpoints(outdir: str | os.PathLike) -> list[Path]:
    """Checkpoint folders of a run, newest step first (valid or not)."""
    root = Path(outdir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def newest_valid(outdir: str | os.PathLike) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint whose files all match their hashes; each corrupt newer one is a warning."""
    for path in list_checkpoints(outdir):
        try:
            return path, read_state(path)
        except CheckpointError as exc:
            warnings.warn(f"skipping {exc.message}", stacklevel=2)
    return None


def read_tensors(folder: str | os.PathLike, rel: str) -> dict[str, torch.Tensor]:
    from sidbench.nets.native import load_tensors

    return load_tensors(Path(folder) / rel)


def load_module(module: torch.nn.Module, folder: Path, name: str) -> None:
    """Load networks/<name>.safetensors of a checkpoint into `module`, strictly."""
    from sidbench.nets.native import check_state_dict

    rel = f"networks/{name}.safetensors"
    tensors = read_tensors(folder, rel)
    check_state_dict(module, tensors, str(folder / rel))
    with torch.no_grad():
        module.load_state_dict(tensors, strict=True)


def prune(outdir: str | os.PathLike, keep: int | None) -> None:
    """Remove all but the newest `keep` checkpoints (and stale partial folders); None keeps every one."""
    root = Path(outdir) / CHECKPOINTS
    for stale in root.glob(".step-*.partial"):
        shutil.rmtree(stale, ignore_errors=True)
    if keep is None:
        return
    for old in list_checkpoints(outdir)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
