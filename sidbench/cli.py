"""`sidbench VERB ...`: one entry point; each verb mirrors a function of `sidbench.api`.

Verbs live in `sidbench/commands/<verb>.py`, each with `add_arguments(parser)` and
`run(args) -> int`; they are imported only when used, so a slow import (torch,
open_clip) never delays `sidbench --help`. Every option's destination is the name of
the API function's parameter (`--num-steps` -> `num_steps`), which tests/test_api_cli.py checks.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sidbench.errors import SidbenchError
from sidbench.registry import suggest

# verb -> (module under sidbench.commands, function of sidbench.api, one-line help)
VERBS: dict[str, tuple[str, str, str]] = {
    "ls": ("ls", "ls", "list registered methods, suites and metrics with their versions"),
    "env": ("env", "env", "print versions, devices and which asset files were found"),
    "convert": ("convert", "convert",
                "convert an EDM network pickle or a state dict to safetensors + JSON (a pickle needs "
                "--trust-pickle)"),
    "generate": ("generate", "generate",
                 "sample images with per-image seeds into a folder or zip (resumable)"),
    "train-teacher": ("train_teacher", "train_teacher",
                      "train the small teacher of an embedded suite (digits, toy2d, digits-t2i)"),
    "eval": ("eval", "evaluate",
             "compute FID / IS / KID / precision-recall / CLIP score under pinned protocols"),
    "refstats": ("refstats", "refstats", "compute reference statistics of a dataset for a protocol"),
    "distill": ("distill", "distill",
                "distil a one-step generator as a YAML recipe says (resumable; --dry-run checks everything)"),
    "validate": ("validate", "validate",
                 "check a method on the digits suite in CPU minutes: finite losses, determinism, "
                 "kill-and-resume, loadable checkpoint, FD improves"),
    "pairs": ("pairs", "pairs",
              "precompute teacher (noise, image) pairs with per-seed Heun sampling for DMD (resumable)"),
    "quickstart": ("quickstart", "quickstart", "run the embedded default suite end to end on this machine"),
    "report": ("report", "report",
               "compare training runs in one HTML page or Markdown: curves, cost, samples, paper verdicts"),
    # A verb of two words is an action of a group ("sidbench leaderboard add"); its module entry is
    # "module:attribute", an object with add_arguments and run.
    "leaderboard add": ("leaderboard:add", "leaderboard_add",
                        "add result records to a suite's leaderboard as its next version (MINOR: rows added, "
                        "PATCH: fixes, MAJOR: a protocol changed)"),
    "leaderboard show": ("leaderboard:show", "leaderboard_show",
                         "print a released leaderboard version, sorted by its headline metric"),
}

# The groups of two-word verbs, with their help.
GROUPS: dict[str, str] = {
    "leaderboard": "versioned leaderboards of result records: add records as a new version, show one",
}

# Options of the `sidbench` program itself, accepted before or after the verb.
GLOBAL_OPTIONS = ("help", "debug")


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line naming the option, the valid choices and the nearest one."""

    def _check_value(self, action: argparse.Action, value: object) -> None:
        if action.choices is None or value in action.choices:
            return
        choices = [str(c) for c in action.choices]
        if isinstance(action, argparse._SubParsersAction):
            name = " ".join([*self.prog.split()[1:], str(value)])  # 'leaderboard ad' inside a group
            raise argparse.ArgumentError(None, f"unknown verb '{name}'.{suggest(str(value), choices)} "
                                               f"Run `{self.prog} --help` for the list.")
        longs = [s for s in action.option_strings if s.startswith("--")]
        name = longs[0] if longs else (action.metavar or action.dest)
        raise argparse.ArgumentError(
            None, f"{name}: invalid choice '{value}'.{suggest(str(value), choices)} "
                  f"Choose from: {', '.join(choices)}.")

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def _unrecognized(parser: argparse.ArgumentParser, extras: Sequence[str]) -> str:
    """'unrecognized arguments: --jsn. Did you mean '--json'?' with the verb's own options as candidates."""
    known = [s for a in parser._actions for s in a.option_strings]
    hints = "".join(suggest(b.split("=")[0], known) for b in extras if b.startswith("-"))
    more = "" if hints else f" See `{parser.prog} -h`."
    return f"unrecognized arguments: {' '.join(extras)}.{hints}{more}"


def _unknown_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """The `--long` options in `argv` that are neither an option of `parser` nor an abbreviation of one."""
    known = [s for a in parser._actions for s in a.option_strings]
    unknown = []
    for token in argv:
        if token == "--":
            break
        name = token.split("=", 1)[0]
        if token.startswith("--") and not any(k.startswith(name) for k in known):
            unknown.append(token)
    return unknown


def _add_global_options(parser: argparse.ArgumentParser, top: bool) -> None:
    # After the verb the default is SUPPRESS, so the subparser never resets a --debug given before it.
    parser.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="show full tracebacks (before or after the verb)")


def build_parser(load_verbs: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; `load_verbs` limits which verbs get their options (None: all)."""
    parser = _Parser(prog="sidbench", description=__doc__.splitlines()[0])
    _add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    groups: dict[str, argparse._SubParsersAction] = {}
    for verb, (module, _api, help_text) in VERBS.items():
        group, _, action = verb.rpartition(" ")
        if group:
            if group not in groups:
                gp = sub.add_parser(group, help=GROUPS[group], description=GROUPS[group])
                _add_global_options(gp, top=False)
                groups[group] = gp.add_subparsers(metavar="ACTION", parser_class=_Parser)
                groups[group].required = True
            p = groups[group].add_parser(action, help=help_text, description=help_text)
            p.set_defaults(verb=verb)  # args.verb is the whole verb, 'leaderboard add'
        else:
            p = sub.add_parser(verb, help=help_text, description=help_text)
        _add_global_options(p, top=False)
        if load_verbs is None or verb in load_verbs:
            _verb_module(module).add_arguments(p)
    return parser


def subparser(parser: argparse.ArgumentParser, verb: str) -> argparse.ArgumentParser:
    """The parser of one verb (two words for a group's action) inside `build_parser()`'s result."""
    for word in verb.split(" "):
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[word]
    return parser


def _verb_module(module: str):
    """A verb's module, or for "module:attribute" that module's verb object (add_arguments, run)."""
    name, _, attribute = module.partition(":")
    found = importlib.import_module(f"sidbench.commands.{name}")
    return getattr(found, attribute) if attribute else found


def _chosen_verb(argv: list[str]) -> tuple[str | None, int]:
    """The verb named in `argv` (two words for a group) and the index of its last word."""
    words = [(i, a) for i, a in enumerate(argv) if not a.startswith("-")]
    if not words:
        return None, -1
    i, verb = words[0]
    if verb in GROUPS and len(words) > 1 and f"{verb} {words[1][1]}" in VERBS:
        i, verb = words[1][0], f"{verb} {words[1][1]}"
    return verb, i


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = [w for a in argv for w in (a.split(" ") if a in VERBS else [a])]  # main(["leaderboard add", ...])
    # Only the chosen verb's module is imported to build its options.
    chosen, at = _chosen_verb(argv)
    parser = build_parser(load_verbs=[chosen] if chosen in VERBS else [])
    if chosen in VERBS:  # a misspelt option is named first, not hidden behind "required: --out"
        verb_parser = subparser(parser, chosen)
        unknown = _unknown_options(verb_parser, argv[at + 1:])
        if unknown:
            verb_parser.error(_unrecognized(verb_parser, unknown))
    args, extras = parser.parse_known_args(argv)
    if extras:
        verb_parser = subparser(parser, args.verb)
        verb_parser.error(_unrecognized(verb_parser, extras))
    try:
        return int(_verb_module(VERBS[args.verb][0]).run(args) or 0)
    except SidbenchError as exc:
        if args.debug:
            raise
        sys.stderr.write(f"sidbench {args.verb}: error: {exc}\n")
        return 1
    except OSError as exc:  # the machine's fault (disk, permissions), not a bug: one line too
        if args.debug:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        sys.stderr.write(f"sidbench {args.verb}: error: {exc.strerror or exc}{where} (--debug shows where)\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("sidbench: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
