"""`sidbench eval`: FID / IS / KID / precision-recall / CLIP score of images or a generator.

API: `sidbench.evaluate`, with the same parameter names.
"""

from __future__ import annotations

import argparse
import sys

from sidbench import api
from sidbench.commands.options import RegistryChoices, alias_note, api_arguments
from sidbench.registry import SUITES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="PATH",
                     help="folder or zip of PNGs (sorted by name), or a dataset")
    src.add_argument("--generator", metavar="DIR_OR_NAME",
                     help="native one-step generator folder (or network.json), EDM or SiD-LSG "
                          "text-to-image (image s from caption s): images made on the fly")
    parser.add_argument("--suite", default=None, metavar="NAME", choices=RegistryChoices(SUITES),
                        help="the suite's reference statistics, metrics and protocols are the defaults; a "
                             "generator must match its teacher (`sidbench ls suites`)")
    parser.add_argument("--ref", metavar="REF",
                        help="reference statistics .npz, or a dataset folder/zip/tarball "
                             "(default: the suite's)")
    parser.add_argument("--ref-images", metavar="PATH", default=None,
                        help="reference images for KID / precision-recall when --ref is an npz")
    parser.add_argument("--metrics", default=None, metavar="LIST",
                        help="comma-separated: fid, is, kid, pr, clip_score (default: the suite's, else fid)")
    parser.add_argument("--protocol", action="append", default=None, metavar="NAME",
                        help="named protocol replacing its metric's default (repeatable or comma-separated)")
    parser.add_argument("--num-images", "--num", type=int, default=None, metavar="N",
                        help="number of images (generator: seeds 0..N-1; files: the first N by name)"
                             + alias_note("--num"))
    parser.add_argument("--seeds", default=None, metavar="LIST", help="generator seeds, e.g. 0-49999")
    parser.add_argument("--seed-sets", action="store_true",
                        help="generator: evaluate every seed set of the FID protocol and report its headline "
                             "rule (edm-fid50k: minimum over seeds 0-49999, 50000-99999, 100000-149999)")
    parser.add_argument("--sigma-init", type=float, default=None,
                        help="one-step generator noise level (default: network.json's, else 2.5)")
    parser.add_argument("--student-steps", type=int, default=None, metavar="N",
                        help="generator: a multi-step student (ADD-style) at N of the noise levels its "
                             "network.json records as student_sigmas (default: one step)")
    parser.add_argument("--inception-weights", metavar="FILE", default=None,
                        help="torch-fidelity Inception weights (weights-inception-2015-12-05-6726825d.pth)")
    parser.add_argument("--vgg16-weights", metavar="FILE", default=None,
                        help="torchvision vgg16-397923af.pth")
    parser.add_argument("--torchscript-inception", metavar="FILE", default=None,
                        help="NVIDIA inception-2015-12-05.pt (clean-fid protocols)")
    parser.add_argument("--clip-weights", metavar="FILE", default=None, help="open_clip ViT-g-14 state dict")
    parser.add_argument("--captions", metavar="FILE", default=None,
                        help="captions file, one per line: caption i of image i for CLIP score / prompt "
                             "alignment, and of seed i for a text-to-image --generator (default under a "
                             "text-to-image suite: its evaluation captions; COCO: the pinned list)")
    parser.add_argument("--teacher", metavar="DIR_OR_NAME", default=None,
                        help="a SiD-LSG --generator's teacher (prompt encoder, decoder); default: the one "
                             "its network.json records, else the suite's")
    parser.add_argument("--channels-last", action="store_true",
                        help="run torch-fidelity's Inception in NHWC: faster (about 1.4-2x on CPU), features "
                             "differ from torch-fidelity's in the last bits (recorded in the result)")
    parser.add_argument("--batch-size", "--batch", type=int, default=64, metavar="B",
                        help="images per extractor batch (default 64)" + alias_note("--batch"))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--json", metavar="OUT.json", default=None,
                        help="write the result record to this file, replacing it (default: print it)")


def run(args: argparse.Namespace) -> int:
    import sidbench.distributed as distributed
    from sidbench.jsonsafe import dumps

    result = api.evaluate(**api_arguments(args))
    if distributed.rank() != 0:
        return 0
    if args.json is None:
        sys.stdout.write(dumps(result) + "\n")
    for name, m in result["metrics"].items():
        std = f" ± {m['std']:.6g}" if m.get("std") is not None else ""
        sys.stderr.write(f"{name:>10s} = {m['value']:.6g}{std}  ({m['protocol']['name']}@"
                         f"{m['protocol']['version']}, {m['num_images']} images)\n")
    return 0
