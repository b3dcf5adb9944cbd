"""`sidbench distill RECIPE`: train a one-step generator as a recipe says (API: `sidbench.distill`)."""

from __future__ import annotations

import argparse

from sidbench import api
from sidbench.commands.options import api_arguments


class _AppendTuple(argparse.Action):
    """Repeatable option collected into a tuple (the API's default is `()`, which argparse cannot append to)."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        setattr(namespace, self.dest, (*getattr(namespace, self.dest, ()), values))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", metavar="RECIPE", help="a YAML recipe, e.g. recipes/sid-digits.yaml")
    parser.add_argument("--set", action=_AppendTuple, default=(), metavar="KEY=VALUE",
                        help="override a recipe setting, repeatable: training.batch=64, method_settings.alpha=1.0 "
                             "(method.X is method_settings.X); an unknown key names the nearest valid one")
    parser.add_argument("--outdir", required=True, metavar="DIR",
                        help="run folder: checkpoints/, config.json, log.jsonl, metrics.jsonl")
    parser.add_argument("--resume", default="auto", metavar="auto|none|CHECKPOINT",
                        help="auto: continue from the newest valid checkpoint in --outdir (default); none: start "
                             "fresh; or a checkpoint folder")
    parser.add_argument("--dry-run", action="store_true", default=False,
                        help="resolve the config, check every asset and the dataset/teacher match, print the "
                             "resolved config, train nothing")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cuda:N (default: cuda if available; under torchrun each process's GPU)")


def run(args: argparse.Namespace) -> int:
    from sidbench.jsonsafe import dumps

    result = api.distill(**api_arguments(args))
    if args.dry_run:
        print(dumps(result.config, sort_keys=False))
        print(f"dry run: config {result.config_hash[:12]} resolved and every asset checked; nothing trained")
        return 0
    print(result.line())
    return 0
