"""`sidbench VERB ...`: one entry point; each verb mirrors an API function.

Verbs live in `sidbench/commands/<verb>.py`, each with `add_arguments(parser)` and
`run(args) -> int`; they are imported only when used, so a slow import (torch,
open_clip) never delays `sidbench --help`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sidbench.errors import SidbenchError
from sidbench.registry import suggest

# verb -> (module under sidbench.commands, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "ls": ("ls", "list registered methods, suites and metrics with their versions"),
    "env": ("env", "print versions, devices and which asset files were found"),
    "convert": ("convert", "convert an EDM network pickle to safetensors + JSON (needs --trust-pickle)"),
    "generate": ("generate", "sample images with per-image seeds into a folder or zip (resumable)"),
    "train-teacher": ("train_teacher", "train the small teacher of an embedded suite (digits, toy2d)"),
    "eval": ("eval", "compute FID / IS / KID / precision-recall / CLIP score under pinned protocols"),
    "refstats": ("refstats", "compute reference statistics of a dataset for a protocol"),
    "quickstart": ("quickstart", "run the embedded default suite end to end on this machine"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that suggests the closest option or verb and exits with one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if "unrecognized arguments:" in message:
            bad = message.split(":", 1)[1].split()
            known = [s for a in self._actions for s in a.option_strings]
            hints = "".join(suggest(b.split("=")[0], known) for b in bad if b.startswith("-"))
            message += hints
        elif "invalid choice:" in message and "choose from" in message:
            bad = message.split("'")[1] if "'" in message else ""
            message = f"unknown verb '{bad}'.{suggest(bad, list(VERBS))} Run `sidbench --help` for the list."
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def build_parser(load_verbs: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="sidbench", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    for verb, (module, help_text) in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text)
        if load_verbs is None or verb in load_verbs:
            _verb_module(module).add_arguments(p)
    return parser


def _verb_module(module: str):
    return importlib.import_module(f"sidbench.commands.{module}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Only the chosen verb's module is imported to build its options.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(load_verbs=[chosen] if chosen in VERBS else [])
    args = parser.parse_args(argv)
    try:
        return int(_verb_module(VERBS[args.verb][0]).run(args) or 0)
    except SidbenchError as exc:
        if args.debug:
            raise
        sys.stderr.write(f"sidbench {args.verb}: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("sidbench: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
