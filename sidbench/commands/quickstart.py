"""`sidbench quickstart`: the embedded default suite end to end (see sidbench.workflows.quickstart)."""

from __future__ import annotations

import argparse

from sidbench.workflows.quickstart import default_device, quickstart, summary_rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/quickstart", help="output folder (default: runs/quickstart)")
    parser.add_argument("--suite", default="digits", help="an embedded suite with a packaged teacher")
    parser.add_argument("--num", type=int, default=2000,
                        help="images per row (the digits protocols use 2000)")
    parser.add_argument("--batch", type=int, default=250, help="batch size for sampling and extraction")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--few-steps", type=int, default=2, help="Heun steps of the few-step row (default 2)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    report = quickstart(args.out, suite=args.suite, num_images=args.num, batch_size=args.batch,
                        device=args.device or default_device(), few_steps=args.few_steps)
    rows = summary_rows(report)
    table = Table(title=f"sidbench quickstart — suite {report['suite']} ({args.num} images per row)",
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
