"""One writer per output: an exclusive lock file next to it, held for the whole run.

Without it, two runs on one `.zip` both exit 0 and one packs a zip of whatever the
other had staged. The lock is `fcntl.flock` on `OUT.lock` (non-blocking), which the
kernel releases when its holder exits or dies, so a lock file left by a killed run
(whose PID is dead) is stale and simply taken over. The holder's PID is written into
the file so the second writer can say whom it waits for.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from sidbench.errors import SidbenchError


def lock_path(out: str | os.PathLike) -> Path:
    """`OUT.lock`, beside the folder or zip it guards (`.` and `a/..` are named by their real path)."""
    out = Path(os.path.abspath(out))
    if not out.name:
        raise SidbenchError(f"cannot write images to {out}", hint="pass an --out folder below it")
    return out.with_name(out.name + ".lock")


def _holder(fd: int) -> str:
    """The PID written by the lock's holder (it may not have written it yet)."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text:
            return text
        time.sleep(0.005)
    return "unknown"


@contextlib.contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[Path]:
    """Hold `OUT.lock` exclusively while the block runs; refuse at once if another writer holds it."""
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise SidbenchError(f"cannot create the lock file {path}: {exc.strerror or exc}",
                                hint="pass an --out in a folder you can write to") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            raise SidbenchError(
                f"{out} is being written by another process (PID {pid}, lock {path})",
                hint="wait for it to finish, or pass another --out",
            ) from None
        except OSError as exc:
            os.close(fd)
            raise SidbenchError(f"cannot lock {path}: {exc.strerror or exc}",
                                hint="pass an --out on a file system that supports locks") from None
        try:  # the previous holder may have unlinked the file between our open and flock
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still holding it, so no one can lock the old file after us
        os.close(fd)
