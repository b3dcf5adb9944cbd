"""`sidbench refstats`: reference statistics (mu, sigma) of a dataset for a protocol's extractor."""

from __future__ import annotations

import argparse
import sys

from sidbench.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET",
                        help="EDM dataset zip/folder, image folder or CIFAR tarball")
    parser.add_argument("--out", required=True, metavar="STATS.npz", help="where to write the statistics")
    parser.add_argument("--protocol", default="edm-fid50k", metavar="NAME",
                        help="protocol whose extractor and feature layer to use (default: edm-fid50k)")
    parser.add_argument("--max-images", type=int, default=None, metavar="N",
                        help="use EDM's seeded random subset of N images when the dataset is larger")
    parser.add_argument("--inception-weights", metavar="FILE", default=None,
                        help="torch-fidelity Inception weights (weights-inception-2015-12-05-6726825d.pth)")
    parser.add_argument("--weights", metavar="FILE", default=None,
                        help="weights of the protocol's extractor (any extractor; overrides the above)")
    parser.add_argument("--batch", type=int, default=64, metavar="B", help="images per extractor batch")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")


def run(args: argparse.Namespace) -> int:
    import torch

    from sidbench.metrics.evaluate import compute_reference
    from sidbench.metrics.protocols import get_protocol

    protocol = get_protocol(args.protocol)
    if protocol.metric not in ("fid",):
        raise ConfigError(f"protocol {protocol.name} is a {protocol.metric} protocol; refstats makes FID "
                          "statistics",
                          hint="use e.g. --protocol edm-fid50k, coco2014-fid30k-clean or digits-fd")
    if args.batch < 1:
        raise ConfigError(f"--batch {args.batch} must be at least 1", hint="e.g. --batch 64")
    weights = args.weights
    if weights is None and protocol.extractor == "inception-v3-compat":
        weights = args.inception_weights
    meta = compute_reference(args.dataset, args.out, protocol.name, weights_path=weights,
                             max_images=args.max_images, batch_size=args.batch,
                             device=torch.device(args.device))
    sys.stderr.write(f"wrote {args.out}: {meta['num_images']} images, {protocol.name}@{protocol.version}, "
                     f"extractor {meta['extractor']} ({meta['extractor_sha256'][:12]}...)\n")
    return 0
