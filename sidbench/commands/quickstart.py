"""`sidbench quickstart`: the embedded default suite end to end (API: `sidbench.quickstart`)."""

from __future__ import annotations

import argparse

from sidbench import api
from sidbench.commands.options import RegistryChoices, alias_note, api_arguments
from sidbench.registry import SUITES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/quickstart", metavar="DIR",
                        help="output folder (default: runs/quickstart)")
    parser.add_argument("--suite", default="digits", metavar="NAME", choices=RegistryChoices(SUITES),
                        help="an embedded suite with a packaged teacher (default: digits)")
    parser.add_argument("--num-images", "--num", type=int, default=2000, metavar="N",
                        help="images per row (the digits protocols use 2000)" + alias_note("--num"))
    parser.add_argument("--batch-size", "--batch", type=int, default=250, metavar="B",
                        help="batch size for sampling and extraction (default 250)" + alias_note("--batch"))
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--few-steps", type=int, default=2, help="Heun steps of the few-step row (default 2)")
    parser.add_argument("--distill", action=argparse.BooleanOptionalAction, default=True,
                        help="distil the digits teacher with SiD and SiDA and add their one-step rows "
                             "(default; --no-distill skips them)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from sidbench.workflows.quickstart import summary_rows

    report = api.quickstart(**api_arguments(args))
    rows = summary_rows(report)
    table = Table(title=f"sidbench quickstart — suite {report['suite']} ({args.num_images} images per row)",
                  title_justify="left")
    for col in rows[0]:
        table.add_column(col, justify="left" if col == "row" else "right")
    for r in rows:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()))
    console = Console()
    console.print(table)
    console.print("FD: Fréchet distance in the digits classifier's features (lower is better); KID likewise; "
                  "IS from its 10 logits (at most 10).")
    console.print(f"records: {args.out}/results.json")
    return 0
