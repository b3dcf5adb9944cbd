"""What a run shows and logs: a rich progress bar (kimg, kimg/s, ETA, loss terms), `log.jsonl`,
and TensorBoard scalars when the package is installed.

Only process 0 writes. `log.jsonl` is appended one complete line at a time and flushed (a
log is appended too often to rewrite it whole); a resume first rewrites it atomically
without the lines past the checkpoint it resumes from, and without a line cut short.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from sidbench.fileio import atomic_write_text
from sidbench.jsonsafe import dumps, encode_nonfinite
from sidbench.progress import progress_enabled

LOG = "log.jsonl"


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete JSON lines of a file (a last line cut short by a crash is dropped)."""
    p = Path(path)
    if not p.is_file():
        return []
    rows = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def truncate_jsonl(path: str | os.PathLike, step: int) -> None:
    """Keep only the rows at or before `step` (rewritten atomically)."""
    p = Path(path)
    if not p.exists():
        return
    rows = [r for r in read_jsonl(p) if int(r.get("step", 0)) <= step]
    atomic_write_text(p, "".join(json.dumps(encode_nonfinite(r), sort_keys=True, allow_nan=False) + "\n"
                                 for r in rows))


def _tensorboard(outdir: Path, mode: str | bool) -> Any:
    if mode is False:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if mode is True:
            from sidbench.errors import ConfigError

            raise ConfigError("training.tensorboard is true but TensorBoard is not installed",
                              hint="pip install tensorboard, or set training.tensorboard=auto") from None
        return None
    return SummaryWriter(str(outdir / "tensorboard"))


class Monitor:
    """Progress bar, JSON-lines log and TensorBoard of one run (all quiet on processes other than 0)."""

    def __init__(self, outdir: str | os.PathLike, *, total_steps: int, batch: int, start_step: int,
                 active: bool, progress: bool, tensorboard: str | bool, name: str):
        self.outdir = Path(outdir)
        self.total_steps, self.batch = total_steps, batch
        self.active = active
        self._log = open(self.outdir / LOG, "a", encoding="utf-8") if active else None  # noqa: SIM115
        self._tb = _tensorboard(self.outdir, tensorboard) if active else None
        self._bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("{task.fields[kimg]}/{task.fields[total_kimg]} kimg"),
            TextColumn("{task.fields[speed]} kimg/s"), TimeElapsedColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[terms]}"),
            disable=not (active and progress and progress_enabled()), transient=False)
        self._task = self._bar.add_task(name, total=total_steps, completed=start_step,
                                        kimg=f"{start_step * batch / 1000:.1f}",
                                        total_kimg=f"{total_steps * batch / 1000:.1f}", speed="-", terms="")
        self._bar.start()
        self._t0, self._step0 = time.perf_counter(), start_step

    def advance(self, step: int) -> None:
        """Step `step` is done (steps counted from 1)."""
        if not self.active:
            return
        elapsed = time.perf_counter() - self._t0
        speed = (step - self._step0) * self.batch / 1000 / elapsed if elapsed > 0 else 0.0
        self._bar.update(self._task, completed=step, kimg=f"{step * self.batch / 1000:.1f}",
                         speed=f"{speed:.2f}")

    def log(self, row: dict[str, Any]) -> None:
        """One line of log.jsonl; scalars also to TensorBoard and loss terms onto the bar."""
        if not self.active:
            return
        self._log.write(dumps(row, indent=None) + "\n")
        self._log.flush()
        terms = row.get("terms", {})
        shown = "  ".join(f"{k} {v:.4g}" for k, v in terms.items() if isinstance(v, float))
        self._bar.update(self._task, terms=shown)
        if self._tb is not None:
            nimg = int(row.get("step", 0)) * self.batch
            for key, value in terms.items():
                if isinstance(value, float):
                    self._tb.add_scalar(f"loss/{key}", value, nimg)
            for key in ("kimg_per_s", "skipped"):
                if isinstance(row.get(key), int | float):
                    self._tb.add_scalar(f"progress/{key}", row[key], nimg)

    def metrics(self, step: int, values: dict[str, float]) -> None:
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(f"metrics/{key}", value, step * self.batch)

    def close(self) -> None:
        self._bar.stop()
        if self._log is not None:
            self._log.close()
        if self._tb is not None:
            self._tb.close()
