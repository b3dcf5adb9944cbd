"""`sidbench leaderboard add|show`: versioned leaderboards of result records.

API: `sidbench.leaderboard_add` and `sidbench.leaderboard_show`, with the same parameter names.
The two verbs of this module are `add` and `show` (each an `add_arguments` / `run` pair, as a
verb module has); `sidbench.cli` registers them as `leaderboard add` and `leaderboard show`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NamedTuple

from sidbench import api
from sidbench.commands.options import api_arguments
from sidbench.leaderboards.versions import BUMPS

_ROOT_HELP = "folder holding every suite's leaderboard (default: leaderboards, the repository's)"


class Verb(NamedTuple):
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _add_arguments_add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("records", nargs="+", metavar="RECORD",
                        help="result record .json files (sidbench.result schema v1), e.g. a training run's "
                             "evaluations")
    parser.add_argument("--suite", required=True, metavar="NAME",
                        help="the suite whose leaderboard gets the next version; every record must be of it")
    parser.add_argument("--root", default="leaderboards", metavar="DIR", help=_ROOT_HELP)
    parser.add_argument("--bump", default=None, choices=BUMPS,
                        help="minor (the default): rows added; patch: rows replaced by fixed records of the "
                             "same row; major: a protocol changed major version (required then, refused "
                             "otherwise)")
    parser.add_argument("--note", default=None, metavar="TEXT", help="one line for the suite's CHANGELOG.md")


def _run_add(args: argparse.Namespace) -> int:
    result = api.leaderboard_add(**api_arguments(args))
    was = f" (after {result['previous']})" if result["previous"] else ""
    changes = ", ".join(f"{len(result[k])} {k}" for k in ("added", "replaced", "dropped") if result[k])
    print(f"{result['suite']} leaderboard {result['version']}{was}: {result['bump']}, {changes}; "
          f"{result['rows']} rows sorted by {result['headline']}")
    print(f"released: {result['path']} (table.md, table.csv, records/, manifest.json)")
    return 0


def _add_arguments_show(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", metavar="SUITE",
                        help="a suite with a leaderboard (see the folders under --root)")
    parser.add_argument("--version", default=None, metavar="vX.Y.Z",
                        help="a released version (default: the newest)")
    parser.add_argument("--root", default="leaderboards", metavar="DIR", help=_ROOT_HELP)


def _text(value: Any, digits: bool = False) -> str:
    if value is None:
        return ""
    if digits and isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _run_show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    result = api.leaderboard_show(**api_arguments(args))
    metrics = result["metrics"]
    head = next((m for m in metrics if m["key"] == result["headline"]), None)
    order = f", sorted by {head['label']} ({'lower' if head['lower_is_better'] else 'higher'} is better)" \
        if head else ""
    table = Table(title=f"{result['suite']} leaderboard {result['version']}{order}", title_justify="left")
    arrows = {m["key"]: "\u2193" if m["lower_is_better"] else "\u2191" for m in metrics}
    show_kimg = any(r["kimg"] is not None for r in result["rows"])
    for col in ("rank", "row", "source", "teacher NFE", "generator NFE"):
        table.add_column(col, justify="right" if col in ("rank", "teacher NFE", "generator NFE") else "left")
    for m in metrics:
        table.add_column(f"{m['label']} {arrows[m['key']]}", justify="right")
    if show_kimg:
        table.add_column("kimg", justify="right")
    table.add_column("protocols")
    best = {}
    for m in metrics:
        values = [r[m["key"]] for r in result["rows"] if isinstance(r[m["key"]], float)]
        if values:
            best[m["key"]] = min(values) if m["lower_is_better"] else max(values)
    for r in result["rows"]:
        source = r["source"] + (f" [{r['source_tag']}]" if r["source_tag"] else "")
        cells = [_text(r["rank"]), escape(r["label"]), escape(source), _text(r["teacher_nfe"]),
                 _text(r["generator_nfe"])]
        for m in metrics:
            text = _text(r[m["key"]], digits=True)
            off = m["key"] in (r["off_protocol"] or "").split()
            cells.append((f"[bold]{text}[/bold]" if r[m["key"]] == best.get(m["key"]) else text)
                         + ("\u2020" if text and off else ""))
        if show_kimg:
            cells.append(_text(r["kimg"], digits=True))
        cells.append(escape(r["protocols"]))
        table.add_row(*cells)
    console = Console()
    console.print(table)
    console.print(f"[dim]\u2020 measured off its protocol. Citations and records: {escape(result['path'])}/"
                  f"table.md; versions: {', '.join(result['versions'])}[/dim]")
    return 0


add = Verb(_add_arguments_add, _run_add)
show = Verb(_add_arguments_show, _run_show)
