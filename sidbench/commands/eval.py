"""`sidbench eval`: FID / IS / KID / precision-recall / CLIP score of images or a generator."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sidbench.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="PATH",
                     help="folder or zip of PNGs (sorted by name), or a dataset")
    src.add_argument("--generator", metavar="DIR",
                     help="native one-step generator folder: images made on the fly")
    parser.add_argument("--ref", metavar="REF",
                        help="reference statistics .npz, or a dataset folder/zip/tarball")
    parser.add_argument("--ref-images", metavar="PATH", default=None,
                        help="reference images for KID / precision-recall when --ref is an npz")
    parser.add_argument("--metrics", default="fid", metavar="LIST",
                        help="comma-separated: fid, is, kid, pr, clip_score (default: fid)")
    parser.add_argument("--protocol", action="append", default=None, metavar="NAME",
                        help="named protocol replacing its metric's default (repeatable or comma-separated)")
    parser.add_argument("--num", type=int, default=None, metavar="N",
                        help="number of images (generator: seeds 0..N-1; files: the first N by name)")
    parser.add_argument("--seeds", default=None, metavar="LIST", help="generator seeds, e.g. 0-49999")
    parser.add_argument("--seed-sets", action="store_true",
                        help="generator: evaluate every seed set of the FID protocol and report its headline "
                             "rule (edm-fid50k: minimum over seeds 0-49999, 50000-99999, 100000-149999)")
    parser.add_argument("--sigma-init", type=float, default=2.5, help="one-step generator noise level")
    parser.add_argument("--inception-weights", metavar="FILE", default=None,
                        help="torch-fidelity Inception weights (weights-inception-2015-12-05-6726825d.pth)")
    parser.add_argument("--vgg16-weights", metavar="FILE", default=None,
                        help="torchvision vgg16-397923af.pth")
    parser.add_argument("--torchscript-inception", metavar="FILE", default=None,
                        help="NVIDIA inception-2015-12-05.pt (clean-fid protocols)")
    parser.add_argument("--clip-weights", metavar="FILE", default=None, help="open_clip ViT-g-14 state dict")
    parser.add_argument("--captions", metavar="FILE", default=None, help="captions file (CLIP score)")
    parser.add_argument("--channels-last", action="store_true",
                        help="run torch-fidelity's Inception in NHWC: faster (about 1.4-2x on CPU), features "
                             "differ from torch-fidelity's in the last bits (recorded in the result)")
    parser.add_argument("--batch", type=int, default=64, metavar="B", help="images per extractor batch")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--json", dest="json_out", metavar="OUT.json", default=None,
                        help="write the result record here (default: print it)")


def _weights(args: argparse.Namespace) -> dict[str, str | None]:
    return {"inception-v3-compat": args.inception_weights, "vgg16-fc2-relu": args.vgg16_weights,
            "clean-fid-inception": args.torchscript_inception, "open-clip-vitg14": args.clip_weights}


def run(args: argparse.Namespace) -> int:
    import torch

    import sidbench.distributed as distributed
    from sidbench.fileio import atomic_write_json
    from sidbench.metrics.evaluate import evaluate, parse_metrics

    metrics = parse_metrics(args.metrics)
    if args.batch < 1:
        raise ConfigError(f"--batch {args.batch} must be at least 1", hint="e.g. --batch 64")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise ConfigError(f"unknown device '{args.device}'", hint="use cpu, cuda or cuda:N") from None
    protocols = [p.strip() for item in (args.protocol or []) for p in item.split(",") if p.strip()]
    captions = None
    if args.captions:
        path = Path(args.captions)
        if not path.is_file():
            raise ConfigError(f"captions file {path} not found", hint="pass the captions.txt of the protocol")
        captions = path.read_text(encoding="utf-8").splitlines()
    ext_options = {"inception-v3-compat": {"channels_last": True}} if args.channels_last else None
    common = dict(ref_images=args.ref_images, weights=_weights(args), captions=captions,
                  batch_size=args.batch, device=device, extractor_options=ext_options)
    if args.seed_sets and not args.generator:
        raise ConfigError("--seed-sets needs --generator", hint="evaluate a folder of images without it")
    if args.generator:
        from sidbench.commands.generate import resolve_seeds
        from sidbench.metrics.evaluate import evaluate_seed_sets, resolve_protocols
        from sidbench.metrics.image_source import GeneratorImageSource, onestep_renderer
        from sidbench.nets.native import load_network, read_network_record

        net = load_network(args.generator, device=device)
        record = read_network_record(args.generator)
        render = onestep_renderer(net, args.sigma_init, device)
        info = {"generator": str(args.generator), "generator_sha256": record.get("weights_sha256"),
                "sigma_init": args.sigma_init}
        if args.seed_sets:
            if args.seeds or args.num:
                raise ConfigError("--seed-sets takes the protocol's seeds; drop --seeds/--num")
            chosen = resolve_protocols(metrics, protocols or None)
            first = chosen["fid"] if "fid" in chosen else next(iter(chosen.values()))
            sets = first.option("seed_sets") or ((0, first.num_images - 1),)
            result = evaluate_seed_sets(render, sets, args.ref, metrics, protocols or None, description=info,
                                        **common)
        else:
            images = GeneratorImageSource(render, resolve_seeds(args.seeds, args.num), info)
            result = evaluate(images, args.ref, metrics, protocols or None, **common)
    else:
        result = evaluate(args.images, args.ref, metrics, protocols or None, num_images=args.num, **common)
    if distributed.rank() != 0:
        return 0
    if args.json_out:
        atomic_write_json(args.json_out, result)
    else:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    for name, m in result["metrics"].items():
        std = f" ± {m['std']:.6g}" if m.get("std") is not None else ""
        sys.stderr.write(f"{name:>10s} = {m['value']:.6g}{std}  ({m['protocol']['name']}@"
                         f"{m['protocol']['version']}, {m['num_images']} images)\n")
    return 0
