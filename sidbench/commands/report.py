"""`sidbench report RUN_DIR... --out report.html|.md`: compare training runs (API: `sidbench.report`)."""

from __future__ import annotations

import argparse

from sidbench import api
from sidbench.commands.options import api_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="training run folders written by `sidbench distill --outdir` (config.json, "
                             "metrics.jsonl, checkpoints/)")
    parser.add_argument("--out", required=True, metavar="report.html|report.md",
                        help="the report: .html is one self-contained page; .md writes its PNGs into "
                             "<stem>_files/ beside it")
    parser.add_argument("--leaderboard", default=None, metavar="SUITE",
                        help="add the newest released version of this suite's leaderboard, with the runs' "
                             "newest rows beside it")
    parser.add_argument("--root", default="leaderboards", metavar="DIR",
                        help="folder holding every suite's leaderboard (default: leaderboards, the "
                             "repository's)")
    parser.add_argument("--grid", type=int, default=8, metavar="N",
                        help="an N x N sample grid of each run's newest product, seeds 0 .. N*N-1 "
                             "(default 8; 0: none)")
    parser.add_argument("--device", default=None,
                        help="device for the sample grids: cpu, cuda or cuda:N (default: cuda if available)")


def run(args: argparse.Namespace) -> int:
    result = api.report(**api_arguments(args))
    for note in result["notes"]:
        print(f"note: {note}")
    for v in result["verdicts"]:
        print(f"{v['run']}: {v['metric']} {v['status']} ({v['reason']})")
    extra = f" and {len(result['files']) - 1} images beside it" if len(result["files"]) > 1 else ""
    print(f"report of {len(result['runs'])} run(s), {len(result['figures'])} figures: {result['out']}{extra}")
    return 0
