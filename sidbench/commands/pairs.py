"""`sidbench pairs`: teacher (noise, image) pairs, per-seed Heun, resumable (API: `sidbench.pairs`)."""

from __future__ import annotations

import argparse

from sidbench import api
from sidbench.commands.options import RegistryChoices, alias_note, api_arguments
from sidbench.registry import SUITES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder: safetensors shards and pairs.json (a rerun resumes it)")
    parser.add_argument("--suite", default=None, metavar="NAME", choices=RegistryChoices(SUITES),
                        help="take the teacher and its Heun settings from this suite, and check the network "
                             "matches it (`sidbench ls suites`)")
    parser.add_argument("--network", "--teacher", metavar="DIR_OR_NAME", default=None,
                        help="teacher folder, its network.json, or a named asset such as digits (default: "
                             "the --suite's teacher)" + alias_note("--teacher"))
    parser.add_argument("--seeds", default=None, metavar="LIST", help="seeds, e.g. 0-24999 or 1,2,5-10")
    parser.add_argument("--num-pairs", "--num", type=int, default=None, metavar="N",
                        help="number of pairs; alone it means seeds 0..N-1" + alias_note("--num"))
    parser.add_argument("--batch-size", "--batch", type=int, default=64, metavar="B",
                        help="pairs per network batch (default 64)" + alias_note("--batch"))
    parser.add_argument("--num-steps", "--steps", type=int, default=None, metavar="N",
                        help="Heun steps, NFE = 2N-1 (default: the suite's, else EDM's 18 up to 32x32, 40 "
                             "above; DMD's ImageNet pairs use 256)" + alias_note("--steps"))
    parser.add_argument("--sigma-min", type=float, default=None,
                        help="lowest Heun noise level (default: the suite's, else 0.002)")
    parser.add_argument("--sigma-max", type=float, default=None,
                        help="highest Heun noise level, the scale of the stored noise (default: the suite's, "
                             "else 80)")
    parser.add_argument("--rho", type=float, default=None,
                        help="Heun time step exponent (default: the suite's, else 7)")
    parser.add_argument("--shard-size", type=int, default=1000, metavar="N",
                        help="pairs per safetensors shard, the unit of resuming (default 1000)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")


def run(args: argparse.Namespace) -> int:
    summary = api.pairs(**api_arguments(args))
    print(summary.line())
    return 0
