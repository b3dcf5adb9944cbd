"""`sidbench env`: versions, devices and which real asset files were found (API: `sidbench.env`)."""

from __future__ import annotations

import argparse

from sidbench.commands.options import api_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    from sidbench import api

    report = api.env(**api_arguments(args))
    if isinstance(report, str):
        print(report)
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    env = Table(title="environment", title_justify="left", show_header=False)
    for k, v in report["environment"].items():
        env.add_row(k, str(v))
    console.print(env)
    assets = Table(title="assets (SIDBENCH_CACHE)", title_justify="left")
    for col in ("asset", "file", "status"):
        assets.add_column(col)
    for row in report["assets"]:
        assets.add_row(row["name"], row["path"], row["status"])
    console.print(assets)
    return 0
