"""Release leaderboards/published.yaml's rows into each suite's leaderboard with `sidbench leaderboard add`.

Not collected by pytest (a maintainer's tool). Usage, from the repository root:

    python tests/tools/release_published.py [--root leaderboards] [--yaml leaderboards/published.yaml]

Each row becomes a record file (written once, like any record), and each suite gets the next version
through the public API: a suite without a leaderboard gets v1.0.0; rows new to the newest version are
added as a MINOR version; rows whose content changed (value, citation, note: anything but the creation
time and the harness version) are released as a PATCH. Nothing is released when nothing changed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import sidbench
from sidbench.jsonsafe import dumps
from sidbench.leaderboards.published import by_suite, published_records
from sidbench.leaderboards.store import load_version, versions
from sidbench.leaderboards.table import row_id
from sidbench.records import write_record


def _content(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("created", "sidbench")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="leaderboards")
    ap.add_argument("--yaml", default="leaderboards/published.yaml")
    args = ap.parse_args(argv)
    records = published_records(args.yaml)
    with tempfile.TemporaryDirectory() as tmp:
        for suite, recs in by_suite(records).items():
            known = versions(args.root, suite)
            old = load_version(args.root, suite, known[-1])[1].records if known else {}
            new_rows = [r for r in recs if row_id(r) not in old]
            changed = [r for r in recs if row_id(r) in old
                       and _content(json.loads(dumps(r))) != _content(old[row_id(r)])]
            for rows, bump, note in ((new_rows, None, "published numbers with citations (leaderboards/"
                                                       "published.yaml)"),
                                     (changed, "patch", "published numbers corrected (leaderboards/"
                                                        "published.yaml)")):
                if not rows:
                    continue
                folder = Path(tmp) / suite / (bump or "minor")
                folder.mkdir(parents=True)
                paths = [write_record(folder / f"{row_id(r)}.json", r) for r in rows]
                result = sidbench.leaderboard_add(paths, suite=suite, root=args.root, bump=bump, note=note)
                print(f"{suite}: {result['version']} ({result['bump']}, {result['rows']} rows)")
            if not new_rows and not changed:
                print(f"{suite}: up to date at {known[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
