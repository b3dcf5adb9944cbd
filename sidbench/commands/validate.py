"""`sidbench validate METHOD`: a method author's checklist before a pull request (API: sidbench.validate)."""

from __future__ import annotations

import argparse

from sidbench import api
from sidbench.commands.options import AppendTuple, RegistryChoices, api_arguments
from sidbench.registry import METHODS


class _RegisteredOrBroken(RegistryChoices):
    """A broken plugin's name is accepted here, so that `api.validate` reports its own load error
    (import error, duplicate name, wrong object) instead of argparse's 'invalid choice'."""

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and self.registry.known(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", choices=_RegisteredOrBroken(METHODS), metavar="method",
                        help="a registered method (`sidbench ls methods`)")
    parser.add_argument("--set", action=AppendTuple, default=(), metavar="KEY=VALUE",
                        help="override a setting of the validation recipe, repeatable, as for distill (e.g. "
                             "method_settings.generator_start_kimg=0 for a generator that waits 100 kimg)")
    parser.add_argument("--outdir", default=None, metavar="DIR",
                        help="keep the validation runs here (default: a temporary folder, removed)")
    parser.add_argument("--steps", type=int, default=40, metavar="N",
                        help="optimizer steps (16 images each) of the main run on the digits suite "
                             "(default 40)")


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
        console.print(f"[red]validate {result.method}: FAILED at '{escape(failed.name)}': "
                      f"{escape(failed.detail)}")
        return 1
    console.print(f"[green]validate {result.method}: every check passed")
    return 0
