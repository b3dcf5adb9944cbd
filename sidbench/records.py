"""Result records: the JSON that every measured number travels in.

A record carries everything needed to judge whether two numbers are comparable:
harness version and commit, suite and method with versions, the networks' sha256,
each metric with its protocol and image count, the environment and the cost, and
whether the number was *measured* here or *published* in a paper (with citation).
"""

from __future__ import annotations

import datetime as _dt
import subprocess
from pathlib import Path
from typing import Any

from sidbench import __version__

RECORD_SCHEMA = "sidbench.result"
RECORD_SCHEMA_VERSION = 1


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the source tree sidbench runs from, or None outside a git checkout."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def result_record(*, suite: dict[str, Any], method: dict[str, Any], metrics: dict[str, Any],
                  networks: dict[str, Any], environment: dict[str, Any], cost: dict[str, Any],
                  provenance: str = "measured", citation: str | None = None,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Assemble a schema-versioned record; `provenance` is 'measured' or 'published'."""
    if provenance not in ("measured", "published"):
        raise ValueError(f"provenance must be 'measured' or 'published', not {provenance!r}")
    if provenance == "published" and not citation:
        raise ValueError("a published number needs its citation")
    record = {
        "schema": RECORD_SCHEMA,
        "schema_version": RECORD_SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "sidbench": {"version": __version__, "git_commit": git_commit()},
        "provenance": provenance,
        "citation": citation,
        "suite": suite,
        "method": method,
        "networks": networks,
        "metrics": metrics,
        "environment": environment,
        "cost": cost,
    }
    if extra:
        record.update(extra)
    return record
