"""`sidbench ls`: what is registered, with versions and the package it came from."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from sidbench.registry import METHODS, METRICS, SUITES, Registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", nargs="?", choices=["methods", "suites", "metrics"],
                        help="only this kind (default: all)")


def _table(registry: Registry) -> Table:
    table = Table(title=f"{registry.kind}s", title_justify="left")
    for col in ("name", "version", "source", "about"):
        table.add_column(col)
    for name, obj in registry.items():
        description = getattr(obj, "description", "") or ""
        about = description.splitlines()[0] if description else ""
        table.add_row(name, str(getattr(obj, "version", "?")), registry.source(name), about)
    for name, broken in sorted(registry.broken.items()):
        table.add_row(name, "-", broken.source, f"[red]BROKEN: {broken.error}")
    return table


def run(args: argparse.Namespace) -> int:
    console = Console()
    registries = {"methods": METHODS, "suites": SUITES, "metrics": METRICS}
    for kind, registry in registries.items():
        if args.kind in (None, kind):
            console.print(_table(registry))
    return 0
