"""`sidbench refstats`: reference statistics (mu, sigma) of a dataset for a protocol; API: `refstats`."""

from __future__ import annotations

import argparse
import sys

from sidbench import api
from sidbench.commands.options import RegistryChoices, alias_note, api_arguments
from sidbench.registry import SUITES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET", nargs="?", default=None,
                        help="EDM dataset zip/folder, image folder or CIFAR tarball (default: the suite's)")
    parser.add_argument("--out", default=None, metavar="STATS.npz",
                        help="where to write the statistics (required, except under a suite whose statistics "
                             "are computed once into $SIDBENCH_CACHE: coco2014-*)")
    parser.add_argument("--suite", default=None, metavar="NAME", choices=RegistryChoices(SUITES),
                        help="the suite's dataset (identity-checked) and FID protocol are the defaults")
    parser.add_argument("--protocol", default=None, metavar="NAME",
                        help="FID protocol whose extractor and feature layer to use "
                             "(default: the suite's, else edm-fid50k)")
    parser.add_argument("--max-images", type=int, default=None, metavar="N",
                        help="use EDM's seeded random subset of N images when the dataset is larger")
    parser.add_argument("--inception-weights", metavar="FILE", default=None,
                        help="torch-fidelity Inception weights (weights-inception-2015-12-05-6726825d.pth)")
    parser.add_argument("--weights", metavar="FILE", default=None,
                        help="weights of the protocol's extractor (any extractor; overrides the above)")
    parser.add_argument("--batch-size", "--batch", type=int, default=64, metavar="B",
                        help="images per extractor batch (default 64)" + alias_note("--batch"))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--force", action="store_true",
                        help="replace the suite's statistics already computed into $SIDBENCH_CACHE "
                             "(an --out file is always replaced)")


def run(args: argparse.Namespace) -> int:
    meta = api.refstats(**api_arguments(args))
    digest = f" (sha256 {meta['sha256']} in {meta['path']}.sha256)" if meta.get("sha256") else ""
    sys.stderr.write(f"wrote {meta['path']}{digest}: {meta['num_images']} images, {meta['protocol']}@"
                     f"{meta['protocol_version']}, extractor {meta['extractor']} "
                     f"({str(meta['extractor_sha256'])[:12]}...)\n")
    return 0
