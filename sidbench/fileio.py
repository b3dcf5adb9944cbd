"""Atomic writes and file hashing.

Everything the harness writes goes through a temporary file in the target's folder
followed by `os.replace`, so a crash or a full disk never leaves a half-written
file under the final name, and readers never see one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only on success.

    `fsync=False` skips flushing to the device before the rename: the file is still
    never visible half-written, but a power cut may leave it empty. Use it only where
    readers verify content anyway (resumable PNG output re-decodes every file).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix + ".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; final files get normal permissions
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask is process-wide, and toggling it from writer threads would race.
_UMASK = _read_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented, key-sorted JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- outputs checked before the work that fills them -------------------------------------------

OUTPUT_KINDS = ("file", "dir", "dir_or_zip")


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(path.anchor or ".")


def check_output_path(path: str | os.PathLike, *, kind: str = "file", option: str = "output") -> Path:
    """Refuse, before any work starts, an output that cannot be written; the message names the cause.

    kind "file": one file, replaced atomically if it exists; "dir": a folder, created or reused;
    "dir_or_zip": a path ending in .zip is a file, anything else a folder. Missing parent
    folders are fine (writers create them); the nearest existing one must be a writable folder.
    """
    from sidbench.errors import ConfigError

    if kind not in OUTPUT_KINDS:
        raise ValueError(f"kind must be one of {OUTPUT_KINDS}, not {kind!r}")
    if path is None or str(path) == "":
        raise ConfigError(f"{option} is empty", hint="give the path to write")
    p = Path(path).expanduser()
    if kind == "dir_or_zip":
        kind = "file" if p.suffix.lower() == ".zip" else "dir"
    if kind == "file" and p.is_dir():
        raise ConfigError(f"{option} {p} is an existing directory, but a file is written there",
                          hint=f"give a file path, e.g. {p / 'result'}{p.suffix or '.json'}")
    if kind == "dir" and p.exists() and not p.is_dir():
        raise ConfigError(f"{option} {p} is an existing file, but a folder is written there",
                          hint="give another path, or remove the file")
    # The folder that must accept new entries: the output folder itself if it exists, else the
    # nearest existing ancestor (parents are created on write).
    target = p if (kind == "dir" and p.is_dir()) else _nearest_existing(p.parent)
    if not target.is_dir():
        raise ConfigError(f"{option} {p}: {target} is a file, not a folder",
                          hint="give a path whose parent folders are folders")
    if not os.access(target, os.W_OK | os.X_OK):
        reason = "is on a read-only file system" if _read_only_fs(target) else "is not writable by this user"
        raise ConfigError(f"{option} {p}: {target} {reason}", hint="write somewhere else")
    return p


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows)
        return False


def output_error(exc: OSError, path: str | os.PathLike, option: str = "output"):
    """A one-line ConfigError for a failed write, naming the real cause (not always 'disk full')."""
    import errno

    from sidbench.errors import ConfigError

    causes = {
        errno.ENOSPC: ("the disk is full", "free disk space or write elsewhere"),
        errno.EDQUOT: ("the disk quota is exceeded", "free space in your quota or write elsewhere"),
        errno.EROFS: ("the location is on a read-only file system", "write somewhere else"),
        errno.EACCES: ("permission denied", "write somewhere you may write to"),
        errno.EPERM: ("operation not permitted", "write somewhere you may write to"),
        errno.EISDIR: ("it is a directory", "give a file path"),
        errno.ENOTDIR: ("a parent of it is a file, not a folder", "give a path whose parents are folders"),
        errno.ENAMETOOLONG: ("the file name is too long", "give a shorter path"),
    }
    cause, hint = causes.get(exc.errno, (exc.strerror or type(exc).__name__, "check the path"))
    return ConfigError(f"cannot write {option} {path}: {cause}", hint=hint)


@contextlib.contextmanager
def staged_dir(path: str | os.PathLike, last: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield an empty temporary folder next to `path`; on success move its files into `path`.

    The work (e.g. a conversion) writes into the stage, the caller may check the result, and
    only then do the files appear under `path`, each by an atomic rename; on any failure the
    stage is removed and `path` is left as it was. Files named in `last` (an index such as
    network.json) are removed from `path` first and moved in after the others, so a crash
    midway never leaves an old index pointing at new files.
    """
    import shutil

    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".stage", dir=final.parent))
    try:
        yield stage
        final.mkdir(exist_ok=True)
        for name in last:
            (final / name).unlink(missing_ok=True)
        items = sorted(stage.iterdir(), key=lambda item: (item.name in last, item.name))
        for item in items:
            os.replace(item, final / item.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
