"""`sidbench validate METHOD`: the checklist a method author runs before a pull request (API: `sidbench.validate`)."""

from __future__ import annotations

import argparse

from sidbench import api
from sidbench.commands.options import RegistryChoices, api_arguments
from sidbench.registry import METHODS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", metavar="METHOD", choices=RegistryChoices(METHODS),
                        help="a registered method (`sidbench ls methods`)")
    parser.add_argument("--outdir", default=None, metavar="DIR",
                        help="keep the validation runs here (default: a temporary folder, removed)")
    parser.add_argument("--steps", type=int, default=200, metavar="N",
                        help="optimizer steps of the main run on the digits suite (default 200)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    result = api.validate(**api_arguments(args))
    table = Table(title=f"sidbench validate {result.method} {result.version} — digits suite, "
                        f"{result.steps} steps", title_justify="left")
    for col in ("", "check", "detail", "seconds"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    marks = {True: "[green]PASS", False: "[red]FAIL", None: "[yellow]SKIP"}
    for check in result.checks:
        table.add_row(marks[check.passed], check.name, escape(check.detail), f"{check.seconds:.1f}")
    console = Console()
    console.print(table)
    failed = result.failed
    if failed is not None:
        console.print(f"[red]validate {result.method}: FAILED at '{escape(failed.name)}': {escape(failed.detail)}")
        return 1
    console.print(f"[green]validate {result.method}: every check passed")
    return 0
