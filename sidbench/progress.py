"""Rich progress bars that stay quiet when not attached to a terminal or when disabled."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def progress_enabled() -> bool:
    """Bars are shown on a TTY unless SIDBENCH_NO_PROGRESS is set."""
    return sys.stderr.isatty() and not os.environ.get("SIDBENCH_NO_PROGRESS")


def make_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not progress_enabled(),
        transient=False,
    )


def track(iterable: Iterable[T], total: int | None, description: str) -> Iterator[T]:
    """Iterate with a progress bar counting one unit per item."""
    with make_progress() as progress:
        task = progress.add_task(description, total=total)
        for item in iterable:
            yield item
            progress.advance(task)
