"""Reference statistics that nobody publishes: computed once by `sidbench refstats`, cached with their sha256.

COCO-2014's FID reference (all 40,504 val2014 images under coco2014-fid30k-clean) exists only
as each user computes it. A suite names the file in `settings["ref_stats_cache"]`; it lives in
`$SIDBENCH_CACHE` (`sidbench.assets.cache_dir()`). `sidbench refstats DIR --suite NAME` writes
it there atomically, then its sha256 to the sidecar `<name>.sha256`, also atomically and only
after the npz is in place. The sidecar is in `sha256sum` format ("HEX  NAME"), so
`cd $SIDBENCH_CACHE && sha256sum -c NAME.sha256` checks it by hand. A sidecar rather than a
field of the npz's meta: a file cannot hold the digest of its own bytes, and a digest of the
arrays alone would not notice a damaged archive.

A run that finds the file re-hashes it against the sidecar: statistics modified or cut short
after they were computed are refused with the command that recomputes them. An existing cached
file is replaced only when asked (`--force`). The sidecar guards against accidents (a partial
copy, an edit), not an adversary.

The suite's reference images are an image folder (val2014 holds JPEGs of many sizes, so it is
no square dataset): read in sorted order by `sidbench.images`, every image counted
(`sidbench.data.coco.list_val2014_images`) and cropped/resized by the FID protocol.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

from sidbench.assets import cache_dir
from sidbench.errors import AssetError, ConfigError
from sidbench.fileio import atomic_write_text, check_output_path, sha256_file
from sidbench.suites.base import Suite

SETTING = "ref_stats_cache"
SIDECAR_SUFFIX = ".sha256"
_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)\n?$")


def cache_name(suite: Suite | None) -> str | None:
    """The file name the suite's computed reference statistics have in the cache; None for other suites."""
    if suite is None:
        return None
    name = suite.settings.get(SETTING)
    return str(name) if name else None


def cached_path(suite: Suite) -> Path:
    """Where the suite's computed reference statistics are (or would be): `$SIDBENCH_CACHE/<name>`."""
    name = cache_name(suite)
    if name is None:
        raise ConfigError(f"suite {suite.name} has no cached reference statistics ({SETTING} is not set)")
    return cache_dir() / name


def sidecar_path(path: str | os.PathLike) -> Path:
    """`<file>.sha256`, next to the statistics."""
    p = Path(path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def compute_command(suite: Suite, force: bool = False) -> str:
    """The command that (re)computes the suite's cached statistics, as a user types it."""
    folder = f"{(suite.dataset.filename or 'dataset').upper()}_DIR"
    return f"sidbench refstats {folder} --suite {suite.name}" + (" --force" if force else "")


def write_digest(path: str | os.PathLike) -> str:
    """Hash the statistics at `path` and write the sidecar atomically; returns the digest."""
    p = Path(path)
    digest = sha256_file(p)
    atomic_write_text(sidecar_path(p), f"{digest}  {p.name}\n")
    return digest


def recorded_digest(path: str | os.PathLike) -> str | None:
    """The sha256 the sidecar records for `path`; None without a sidecar; AssetError when it is unreadable."""
    side, again = sidecar_path(path), "recompute the statistics"
    if not side.is_file():
        return None
    try:
        text = side.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AssetError(f"cannot read {side} ({type(exc).__name__})", hint=again) from None
    match = _LINE.match(text)
    if match is None or match.group(2) != Path(path).name:
        raise AssetError(f"{side} is not one 'SHA256  {Path(path).name}' line", hint=again)
    return match.group(1)


def verify_cached(suite: Suite, path: str | os.PathLike | None = None) -> str:
    """Refuse cached statistics whose bytes are not the ones recorded when they were computed; the digest."""
    p = Path(path) if path is not None else cached_path(suite)
    again = f"recompute them: `{compute_command(suite, force=True)}`"
    try:
        recorded = recorded_digest(p)
    except AssetError as exc:
        raise AssetError(f"{exc.message}: the recorded sha256 of {p.name} is lost", hint=again) from None
    if recorded is None:
        raise AssetError(f"{p} has no recorded sha256 ({sidecar_path(p).name} is missing): it was not "
                         "written by `sidbench refstats`, or not completely", hint=again)
    found = sha256_file(p)
    if found != recorded:
        raise AssetError(f"{p} was modified or truncated after it was computed: sha256 {found[:16]}... "
                         f"!= recorded {recorded[:16]}...", hint=again)
    return found


def is_cached_file(suite: Suite, path: str | os.PathLike) -> bool:
    """True when `path` is the suite's cached statistics file (then its sidecar is checked)."""
    if cache_name(suite) is None:
        return False
    target = cached_path(suite)
    try:
        return target.is_file() and Path(path).expanduser().resolve() == target.resolve()
    except OSError:
        return False


def check_cache_target(suite: Suite, force: bool) -> Path:
    """The cache path to write, refused before any work when it exists (unless `force`) or is unwritable."""
    target = check_output_path(cached_path(suite), kind="file", option="the statistics cache file")
    if target.exists() and not force:
        recorded = None
        with contextlib.suppress(AssetError):
            recorded = recorded_digest(target)
        digest = f" (recorded sha256 {recorded[:16]}...)" if recorded else ""
        raise ConfigError(f"suite {suite.name}'s reference statistics are already computed: {target} "
                          f"exists{digest}; they are computed once",
                          hint=f"use them as they are, or recompute them: "
                               f"`{compute_command(suite, force=True)}`")
    return target


def reference_images(suite: Suite, folder: str | os.PathLike, max_images: int | None = None) -> Any:
    """The suite's reference image folder as an image source; every image must be there (count checked)."""
    from sidbench.data.coco import list_val2014_images
    from sidbench.metrics.image_source import FileImageSource

    list_val2014_images(folder, expect_count=suite.dataset.num_images)
    return FileImageSource(folder, max_images, subset="edm-seeded")


def check_cache_request(suite: Suite, protocol: str, max_images: int | None, force: bool) -> Path:
    """Refuse, before any work, what would not make the suite's cached statistics; the path to write.

    Only the suite's own FID protocol and all its images go into the cache, and an existing
    cached file only with `force`.
    """
    from sidbench.metrics.protocols import get_protocol

    own = [n for n in suite.protocols if get_protocol(n).metric == "fid"]
    if own and protocol != own[0]:
        raise ConfigError(f"the cached statistics of suite {suite.name} are {own[0]} statistics, "
                          f"not {protocol}",
                          hint="drop --protocol, or give --out FILE to write these elsewhere")
    if max_images is not None:
        raise ConfigError(f"the cached statistics of suite {suite.name} are of all "
                          f"{suite.dataset.num_images:,} images; --max-images makes a subset",
                          hint="drop --max-images, or give --out FILE to write the subset elsewhere")
    return check_cache_target(suite, force)


def compute_suite_reference(suite: Suite, folder: str | os.PathLike, protocol: str, *,
                            out: str | os.PathLike | None = None, force: bool = False,
                            max_images: int | None = None, weights_path: str | os.PathLike | None = None,
                            batch_size: int = 64, device: Any = "cpu") -> dict[str, Any]:
    """Statistics of the suite's reference image folder under `protocol`, to `out` or (None) the cache.

    To the cache (`check_cache_request`), the sidecar is written after the npz. Returns the stored
    metadata with the `path` written and, for the cache, its `sha256`.
    """
    from sidbench.metrics.evaluate import compute_reference

    target = check_cache_request(suite, protocol, max_images, force) if out is None else Path(out)
    source = reference_images(suite, folder, max_images)
    try:
        meta = compute_reference(source, target, protocol, weights_path=weights_path, batch_size=batch_size,
                                 device=device)
    finally:
        source.close()
    result = {**meta, "path": str(target)}
    import sidbench.distributed as distributed

    if out is None and distributed.rank() == 0:
        result["sha256"] = write_digest(target)
    return result
