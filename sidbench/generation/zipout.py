"""Zip output: read what a zip holds, stage its images for extending, pack a staged folder.

A `.zip` is written only by `pack_zip`, atomically, once every image is staged in
`OUT.zip.partial/`, so a zip that exists is complete. Its manifest claims exactly
the seed PNGs packed into it, and members that are not ours (a README, labels) are
carried over when the zip is extended. Packing is deterministic (sorted members,
fixed timestamps, stored PNGs), so a resumed run writes the same bytes as a fresh one.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidbench import images as imgio
from sidbench.errors import ConfigError, SidbenchError
from sidbench.fileio import atomic_path
from sidbench.generation.manifest import MANIFEST, manifest_text, parse_manifest, with_seeds

ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


def staging_folder(out: Path) -> Path:
    """Where a zip's images are made before packing."""
    return out.with_name(out.name + ".partial")


@dataclass(frozen=True)
class ZipContents:
    """A zip's manifest (None if it has none) and the seeds its `{seed:06d}.png` members name."""

    manifest: dict[str, Any] | None
    seeds: frozenset[int]


def read_zip(out: Path) -> ZipContents:
    """What an existing zip holds; an unreadable zip or manifest is a one-line error."""
    try:
        with zipfile.ZipFile(out) as zf:
            names = zf.namelist()
            text = zf.read(MANIFEST) if MANIFEST in names else None
    except _READ_ERRORS as exc:
        raise ConfigError(f"{out} exists but is not a readable zip: {exc}",
                          hint="pass another --out, or delete it") from None
    manifest = None if text is None else parse_manifest(text, f"{out}:{MANIFEST}")
    return ZipContents(manifest, frozenset(s for s in map(imgio.seed_of, names) if s is not None))


def stage_members(out: Path, folder: Path, seeds: Iterable[int]) -> None:
    """Copy the zip's PNGs for `seeds` into `folder` (those not there yet).

    A member that fails its CRC is skipped, and one that is a truncated PNG is copied
    and then dropped by `images.done_seeds`: either way it counts as not done.
    """
    with zipfile.ZipFile(out) as zf:
        for seed in sorted(seeds):
            name = imgio.seed_filename(seed)
            target = folder / name
            if target.exists():
                continue
            try:
                data = zf.read(name)
            except _READ_ERRORS:
                continue
            with atomic_path(target, fsync=False) as tmp:
                tmp.write_bytes(data)


def _copy_info(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
    new = zipfile.ZipInfo(info.filename, info.date_time)
    new.compress_type, new.external_attr, new.comment = info.compress_type, info.external_attr, info.comment
    new.create_system = info.create_system
    return new


def pack_zip(folder: Path, out: Path, manifest: dict[str, Any], keep_from: Path | None = None) -> set[int]:
    """Pack the seed PNGs staged in `folder` into `out` with a manifest claiming exactly them.

    Members of the zip `keep_from` (usually the old `out`) that are neither seed PNGs nor
    the manifest are copied over unchanged. Returns the seeds packed.
    """
    seeds = sorted(s for s in map(imgio.seed_of, os.listdir(folder)) if s is not None)
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for seed in seeds:
            name = imgio.seed_filename(seed)
            zf.writestr(zipfile.ZipInfo(name, ZIP_TIME), (folder / name).read_bytes())
        if keep_from is not None:
            with zipfile.ZipFile(keep_from) as old:
                for info in old.infolist():
                    if info.filename == MANIFEST or imgio.seed_of(info.filename) is not None:
                        continue
                    try:
                        data = old.read(info)
                    except _READ_ERRORS as exc:
                        hint = "repair or delete that member, or pass another --out"
                        raise SidbenchError(f"cannot copy {info.filename} from {keep_from}: {exc}",
                                            hint=hint) from None
                    zf.writestr(_copy_info(info), data)
        text = manifest_text(with_seeds(manifest, seeds))
        zf.writestr(zipfile.ZipInfo(MANIFEST, ZIP_TIME), text, zipfile.ZIP_DEFLATED)
    return set(seeds)
