"""`sidbench distill RECIPE`: train a one-step generator as a recipe says (API: `sidbench.distill`)."""

from __future__ import annotations

import argparse

from sidbench import api
from sidbench.commands.options import AppendTuple, api_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", metavar="RECIPE", help="a YAML recipe, e.g. recipes/sid-digits.yaml")
    parser.add_argument("--set", action=AppendTuple, default=(), metavar="KEY=VALUE",
                        help="override a recipe setting, repeatable: training.batch=64, "
                             "method_settings.alpha=1.0 (method.X is method_settings.X); an unknown key names"
                             " the nearest valid one")
    parser.add_argument("--outdir", required=True, metavar="DIR",
                        help="run folder: checkpoints/, config.json, log.jsonl, metrics.jsonl")
    parser.add_argument("--resume", default="auto", metavar="auto|none|CHECKPOINT",
                        help="auto: continue from the newest valid checkpoint in --outdir (default); "
                             "none: start fresh; or a checkpoint folder")
    parser.add_argument("--dry-run", action="store_true", default=False,
                        help="resolve the config, check every asset and the dataset/teacher match, print the "
                             "resolved config, train nothing")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cuda:N (default: cuda if available; under torchrun each "
                             "process's own GPU)")


def run(args: argparse.Namespace) -> int:
    from sidbench.jsonsafe import dumps

    result = api.distill(**api_arguments(args))
    if result.dry_run:
        print(dumps({"config_hash": result.config_hash, **result.plan}, sort_keys=False))
        start = f"resume from {result.plan['resume']}" if result.plan.get("resume") else "start at step 0"
        print(f"dry run: config {result.config_hash[:12]} resolved, every asset checked; would {start} "
              f"({result.plan.get('total_steps')} steps in all); nothing trained")
        return 0
    state = "finished" if result.finished else "stopped"
    resumed = f", resumed from {result.resumed_from.name}" if result.resumed_from is not None else ""
    skipped = f", {result.skipped_updates} non-finite updates skipped" if result.skipped_updates else ""
    print(f"{state} at step {result.steps} ({result.kimg:g} kimg) in {result.wall_time_s:.1f} s"
          f"{resumed}{skipped}")
    if result.records:
        last = result.records[-1]
        values = ", ".join(f"{m} {v['value']:.4g}" for m, v in last.get("metrics", {}).items()
                           if isinstance(v.get("value"), float))
        print(f"last evaluation (step {last.get('step')}): {values}; all in {result.outdir}/metrics.jsonl")
    if result.product is not None:
        print(f"generator: {result.product} (sidbench generate --network / eval --generator)")
    return 0
