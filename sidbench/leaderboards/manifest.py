"""The hash manifest of a released leaderboard version: what makes "never edited" checkable.

`manifest.json` lists the sha256 of every other file in the version's folder and the sha256 of
the previous version's manifest, so a change to any released file, an added or removed file,
or a rewritten earlier manifest shows up in `verify` (and in tests/test_leaderboards.py, which
verifies every version in the repository).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sidbench.errors import AssetError
from sidbench.fileio import sha256_file

MANIFEST = "manifest.json"
FORMAT = "sidbench.leaderboard"
FORMAT_VERSION = 1


class AlteredVersionError(AssetError):
    """A released version whose files differ from its manifest."""


def file_hashes(folder: str | Path) -> dict[str, str]:
    """Relative POSIX path -> sha256 of every file under `folder` except the manifest itself."""
    root = Path(folder)
    return {p.relative_to(root).as_posix(): sha256_file(p)
            for p in sorted(root.rglob("*")) if p.is_file() and p.relative_to(root).as_posix() != MANIFEST}


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AlteredVersionError(f"{folder} has no {MANIFEST}: not a released leaderboard version",
                                  hint="versions are made by `sidbench leaderboard add`; remove the folder"
                                  ) from None
    except json.JSONDecodeError as exc:
        raise AlteredVersionError(f"{path} is not JSON ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise AlteredVersionError(f"{path} is not a leaderboard manifest (format {manifest.get('format')!r})")
    return manifest


def verify(folder: str | Path) -> dict[str, Any]:
    """The manifest of `folder`, after checking every file against it; raises naming the first change."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    listed: dict[str, str] = manifest.get("files", {})
    found = file_hashes(folder)
    hint = "released versions are never edited: restore the file (e.g. `git checkout`), and make changes " \
           "as a new version with `sidbench leaderboard add`"
    for name in sorted(set(listed) | set(found)):
        if name not in found:
            raise AlteredVersionError(f"{folder} was altered: {name} is missing", hint=hint)
        if name not in listed:
            raise AlteredVersionError(f"{folder} was altered: {name} is not in its manifest", hint=hint)
        if listed[name] != found[name]:
            raise AlteredVersionError(f"{folder} was altered: {name} differs from its manifest (sha256 "
                                      f"{found[name][:12]}..., manifest {listed[name][:12]}...)", hint=hint)
    return manifest


def manifest_sha256(folder: str | Path) -> str:
    return sha256_file(Path(folder) / MANIFEST)
