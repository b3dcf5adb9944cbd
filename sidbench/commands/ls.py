"""`sidbench ls`: what is registered, with versions and the package it came from (API: `sidbench.ls`)."""

from __future__ import annotations

import argparse

from sidbench import api
from sidbench.commands.options import api_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", nargs="?", choices=api.LS_KINDS, help="only this kind (default: all)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    for kind, rows in api.ls(**api_arguments(args)).items():
        table = Table(title=kind, title_justify="left")
        for col in ("name", "version", "source", "about"):
            table.add_column(col)
        for row in rows:
            about = f"[red]BROKEN: {escape(row['broken'])}" if row["broken"] else escape(row["about"])
            table.add_row(row["name"], row["version"], row["source"], about)
        console.print(table)
    return 0
