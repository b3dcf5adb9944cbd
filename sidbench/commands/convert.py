"""`sidbench convert`: turn a released network file into the native safetensors + JSON folder.

EDM / SiD / SiDA pickles need `--trust-pickle` (unpickling can run code; the
reader is restricted and never runs the embedded source, but the flag states
that the file is trusted). Plain torch state dicts (DMD2) need the architecture:
`--config network.json` or `--preset NAME`. API: `sidbench.convert`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sidbench import api
from sidbench.commands.options import RegistryChoices, api_arguments
from sidbench.registry import SUITES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path,
                        help="EDM-format .pkl, or a torch state dict (.pt/.pth/.bin/.safetensors)")
    parser.add_argument("--out", "-o", type=Path, required=True,
                        help="output folder (network.json + weights); -o is the short form")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="assert the pickle is trusted (e.g. downloaded from NVIDIA's URL); "
                        "required for .pkl")
    parser.add_argument("--key", default="ema", help="key of the network in a snapshot pickle (default: ema)")
    parser.add_argument("--config", type=Path, default=None,
                        help="network.json-style config {class_name, init_kwargs} for a plain state dict")
    parser.add_argument("--preset", default=None,
                        help="named architecture (sidbench.nets.presets): required for a state dict; "
                        "for a pickle, checks that it is that architecture")
    parser.add_argument("--role", choices=api.ROLES, default=None,
                        help="what the network is: generator (one-step, sampled as G(sigma_init * z)), "
                             "teacher, or network; recorded in network.json")
    parser.add_argument("--sigma-init", type=float, default=None,
                        help="noise level of a one-step generator (with --role generator; default 2.5)")
    parser.add_argument("--suite", default=None, metavar="NAME", choices=RegistryChoices(SUITES),
                        help="refuse the network unless it matches this suite's teacher (nothing is written)")


def run(args: argparse.Namespace) -> int:
    summary = api.convert(**api_arguments(args))
    record = summary["record"]
    model = record["init_kwargs"].get("model_type", "?")
    role = f", role {record['role']}" if record.get("role") else ""
    print(f"converted {args.path.name}: {record['class_name']}/{model}{role}, "
          f"{summary['parameters']:,} parameters (+{summary['buffers']:,} buffer values), "
          f"weights sha256 {record['weights_sha256']} "
          f"-> {Path(summary['network_json']).parent}")
    for note in summary["notes"]:
        print(f"note: {note}")
    return 0
