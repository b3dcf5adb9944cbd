"""PNG writing on worker threads, overlapped with sampling, and what to say when the disk fills.

Each PNG is written atomically (`images.write_png`), so a failed write never leaves a
half image under its final name; `drain` waits for every write in flight before it
reports a failure, so no thread is still writing when the error reaches the user.
"""

from __future__ import annotations

import errno
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from sidbench import images as imgio
from sidbench.errors import SidbenchError


def disk_error(exc: OSError, what: str, finished: int, total: int, folder: Path) -> SidbenchError:
    """One line for a failed write: why, how far the run got, and that rerunning resumes."""
    reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
    return SidbenchError(
        f"could not write {what}: {reason}; {finished} of {total} images are finished in {folder}",
        hint="free disk space and rerun the same command to resume",
    )


class PngWriter:
    """Encode and write PNGs with `threads` threads while the caller samples the next batch."""

    def __init__(self, threads: int):
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="sidbench-png")
        self._writing: list[tuple[Path, Future]] = []

    def submit(self, path: Path, image: np.ndarray) -> None:
        self._writing.append((path, self._pool.submit(imgio.write_png, path, image)))

    def drain(self) -> tuple[int, tuple[Path, OSError] | None]:
        """Wait for every write in flight: (how many succeeded, the first failure or None)."""
        ok, failure = 0, None
        for path, future in self._writing:
            try:
                future.result()
                ok += 1
            except OSError as exc:
                failure = failure or (path, exc)
        self._writing.clear()
        return ok, failure

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> PngWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
