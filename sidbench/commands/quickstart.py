"""`sidbench quickstart`: the embedded default suite end to end, every method (API: `sidbench.quickstart`)."""

from __future__ import annotations

import argparse

from sidbench import api
from sidbench.commands.options import RegistryChoices, alias_note, api_arguments
from sidbench.registry import SUITES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/quickstart", metavar="DIR",
                        help="working folder: images, runs, records, leaderboards/, report.html, "
                             "results.json "
                             "(default: runs/quickstart)")
    parser.add_argument("--budget", type=float, default=15.0, metavar="MINUTES",
                        help="sets every method's training steps, round(100 x MINUTES / 15); the default 15 "
                             "(100 steps) finishes within 15 minutes on an idle 2-core CPU. Never a clock: a "
                             "budget always gives the same numbers")
    parser.add_argument("--methods", default=None, metavar="NAME[,NAME]",
                        help="distil only these methods (default: every registered distillation method)")
    parser.add_argument("--suite", default="digits", metavar="NAME", choices=RegistryChoices(SUITES),
                        help="an embedded suite with a packaged teacher (default: digits)")
    parser.add_argument("--num-images", "--num", type=int, default=2000, metavar="N",
                        help="images per row (the digits protocols use 2000)" + alias_note("--num"))
    parser.add_argument("--batch-size", "--batch", type=int, default=250, metavar="B",
                        help="batch size for sampling and extraction (default 250)" + alias_note("--batch"))
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--few-steps", type=int, default=2, help="Heun steps of the few-step row (default 2)")
    parser.add_argument("--distill", action=argparse.BooleanOptionalAction, default=True,
                        help="distil the digits teacher with every registered method and add their rows "
                             "(default; --no-distill: the teacher's rows only)")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from sidbench.workflows.quickstart import summary_rows

    report = api.quickstart(**api_arguments(args))
    rows = summary_rows(report)
    title = (f"sidbench quickstart — suite {report['suite']}, {report['num_images']} images per row, "
             f"{report['steps']} training steps per method (--budget {report['budget_minutes']:g})")
    table = Table(title=title, title_justify="left")
    for col in rows[0]:
        table.add_column(col, justify="left" if col in ("row", "status") else "right",
                         no_wrap=col != "status", overflow="fold")
    for r in rows:
        table.add_row(*(_cell(v) for v in r.values()))
    console = Console(markup=False)  # paths and a plugin's error text are printed as they are
    if not console.is_terminal:  # a log file or a pipe: wide enough that the table's rows stay one line each
        console = Console(markup=False, width=170)
    console.print(table)
    console.print("FD: Fréchet distance in the digits classifier's features (lower is better); KID likewise; "
                  "IS from its 10 logits (at most 10). train s / CPU s: wall and CPU seconds of training.")
    console.print(f"took {report['seconds'] / 60:.1f} min ({report['cpu_seconds'] / 60:.1f} CPU min, "
                  f"{report['cpu_threads']} threads)")
    console.print(f"records: {args.out}/records/  results: {report['path']}")
    board = report.get("leaderboard")
    if board:
        console.print(f"leaderboard: {board['path']}  (sidbench leaderboard show {board['suite']} --root "
                      f"{board['root']})")
    rep = report.get("report") or {}
    if rep.get("path"):
        console.print(f"report: {rep['path']}")
    else:
        console.print(f"report: none ({rep.get('reason', 'not made')})")
    return 0
