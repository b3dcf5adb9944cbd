"""`sidbench ls`: what is registered: versions, papers, the distribution providing each (API: `sidbench.ls`).

A plugin that cannot be used (import error, duplicate name, wrong object) is a red BROKEN row with its error.
"""

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
        for col in ("name", "version", "provided by", "about"):
            table.add_column(col)
        for row in rows:
            if row["broken"]:
                about = f"[red]BROKEN: {escape(row['broken'])}"
            else:
                paper = f"\n[dim]paper: {escape(row['paper'])}" if row["paper"] else ""
                about = escape(row["about"]) + paper
            table.add_row(escape(row["name"]), escape(row["version"]), escape(row["distribution"]), about)
        console.print(table)
    return 0
