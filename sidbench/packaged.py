"""Files shipped inside the sidbench package: the digits teacher, classifier and reference statistics.

They sit under `sidbench/suites/assets/` (package data), but lower layers need them
too (the metrics package loads the digits classifier), so this core module knows
that folder without importing `sidbench.suites`.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from sidbench.errors import AssetError, ConfigError

PACKAGED_ROOT = Path(__file__).resolve().parent / "suites" / "assets"


def packaged_path(relative: str, *, must_exist: bool = True) -> Path:
    """`sidbench/suites/assets/<relative>` (a POSIX relative path such as "digits/teacher").

    Refuses names that leave the folder; with `must_exist`, a missing file or folder
    is an AssetError (the installation is incomplete).
    """
    rel = PurePosixPath(relative)
    if not relative or rel.is_absolute() or ".." in rel.parts:
        raise ConfigError(f"packaged asset name {relative!r} must be a relative path inside the package",
                          hint="e.g. 'digits/teacher' or 'digits/ref-stats.npz'")
    path = PACKAGED_ROOT.joinpath(*rel.parts)
    if must_exist and not path.exists():
        raise AssetError(f"packaged file {relative} is missing from {PACKAGED_ROOT}",
                         hint="reinstall sidbench (the package data was not installed)")
    return path
