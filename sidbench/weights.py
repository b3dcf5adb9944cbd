"""Hash-checked, pickle-free loading of weights files: the one loader every extractor and network uses.

A published file is recognised by its pinned sha256; any other file must load with
`torch.load(weights_only=True)` or safetensors, so nothing the user did not explicitly
trust is ever unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sidbench.assets import ASSETS, resolve_asset
from sidbench.errors import AssetError, CheckpointError
from sidbench.fileio import sha256_file


def check_sha256(path: str | os.PathLike, expected: str | None, what: str, hint: str | None = None) -> str:
    """sha256 of `path`; raises if `expected` is given and differs (prefixes of 8+ hex digits allowed)."""
    digest = sha256_file(path)
    if expected and not digest.startswith(expected.lower()):
        raise AssetError(f"{path}: sha256 {digest[:16]}... does not match the {what} "
                         f"({expected[:16]}...): the file is corrupt, modified or another file",
                         hint=hint or "replace it with the original file")
    return digest


def verify_weights(asset_name: str, path: str | os.PathLike | None) -> tuple[Path, str, bool]:
    """Find the weights of `asset_name` (user path or cache) and make sure loading them is safe.

    Returns (path, sha256, official). The official file is recognised by its pinned
    hash; any other file must load with `torch.load(weights_only=True)`: a file that
    needs a full pickle load is refused before any library unpickles it.
    """
    found, digest, official, _ = load_verified_weights(asset_name, path, keep=False)
    return found, digest, official


def load_verified_weights(asset_name: str, path: str | os.PathLike | None, keep: bool = True
                          ) -> tuple[Path, str, bool, dict[str, torch.Tensor] | None]:
    """`verify_weights` plus the state dict it loaded with weights_only=True (None if not loadable so,
    which is only accepted for the hash-pinned official file)."""
    found = resolve_asset(asset_name, path, verify=False)
    digest = sha256_file(found)
    asset = ASSETS[asset_name]
    official = bool(
        (asset.sha256 and digest == asset.sha256)
        or (asset.sha256_prefix and not asset.sha256 and digest.startswith(asset.sha256_prefix))
    )
    if official:
        try:
            state = load_state_dict_safely(found) if keep else None
        except CheckpointError:
            state = None  # trusted by its hash; the caller may hand the path over
        return found, digest, True, state
    state = load_state_dict_safely(found)
    return found, digest, False, state if keep else None


def load_state_dict_safely(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """`torch.load(weights_only=True)` (or safetensors), turning a refused pickle into a CheckpointError."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a plain weights file (weights_only load refused it: {type(exc).__name__})",
            hint="use the published file, or re-save the state dict with torch.save(model.state_dict())",
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors",
                              hint="save it with torch.save(model.state_dict(), path)")
    return state
