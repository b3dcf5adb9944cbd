"""`sidbench generate`: sample images with per-image seeds into a folder or zip (resumable)."""

from __future__ import annotations

import argparse
import math

from sidbench.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", "--generator", "--network", dest="network", required=True, metavar="DIR",
                        help="native network folder (or its network.json)")
    parser.add_argument("--out", required=True, metavar="DIR_OR_ZIP",
                        help="output folder, or a path ending in .zip (packed when complete)")
    parser.add_argument("--seeds", default=None, metavar="LIST", help="seeds, e.g. 0-49999 or 1,2,5-10")
    parser.add_argument("--num", type=int, default=None, metavar="N",
                        help="number of images; alone it means seeds 0..N-1")
    parser.add_argument("--batch", type=int, default=64, metavar="B", help="images per network batch")
    parser.add_argument("--sampler", choices=["heun", "onestep"], default="heun",
                        help="heun: EDM's 2nd-order sampler (teachers); onestep: G(sigma_init * z)")
    parser.add_argument("--steps", type=int, default=None, metavar="N",
                        help="Heun steps, NFE = 2N-1 (default: EDM's 18 up to 32x32, 40 above)")
    parser.add_argument("--class", dest="class_idx", type=int, default=None, metavar="IDX",
                        help="fixed class for a conditional net (default: random per seed, as EDM)")
    parser.add_argument("--sigma-init", type=float, default=2.5, help="one-step generator noise level")
    parser.add_argument("--sigma-min", type=float, default=0.002, help="lowest Heun noise level")
    parser.add_argument("--sigma-max", type=float, default=80.0, help="highest Heun noise level")
    parser.add_argument("--rho", type=float, default=7.0, help="Heun time step exponent")
    parser.add_argument("--churn", type=float, default=0.0, help="stochasticity S_churn (0: deterministic)")
    parser.add_argument("--s-min", type=float, default=0.0, help="S_min of the stochastic sampler")
    parser.add_argument("--s-max", type=float, default=math.inf, help="S_max of the stochastic sampler")
    parser.add_argument("--s-noise", type=float, default=1.0, help="S_noise of the stochastic sampler")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")


def resolve_seeds(seeds: str | None, num: int | None) -> list[int]:
    """--num N alone means 0..N-1; with --seeds the two must agree."""
    from sidbench.nets.seeds import parse_seeds

    if num is not None and num < 1:
        raise ConfigError(f"--num {num} must be at least 1", hint="e.g. --num 50000")
    if seeds is None:
        if num is None:
            raise ConfigError("no seeds given", hint="give --seeds 0-49999 or --num 50000")
        return list(range(num))
    parsed = parse_seeds(seeds)
    if num is not None and num != len(parsed):
        raise ConfigError(f"--seeds {seeds} lists {len(parsed)} seeds but --num is {num}",
                          hint="drop one of them or make them agree")
    return parsed


def default_steps(resolution: int) -> int:
    """EDM's published teacher settings: 18 steps (35 NFE) at 32x32, 40 (79 NFE) at 64x64."""
    return 18 if resolution <= 32 else 40


def _device(name: str):
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device '{name}'", hint="use cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked but no CUDA device is available", hint="use --device cpu")
    return device


def run(args: argparse.Namespace) -> int:
    from sidbench.generate import generate
    from sidbench.nets.native import load_network, read_network_record

    seeds = resolve_seeds(args.seeds, args.num)
    if args.batch < 1:
        raise ConfigError(f"--batch {args.batch} must be at least 1", hint="e.g. --batch 64")
    device = _device(args.device)
    record = read_network_record(args.network)
    net = load_network(args.network, device=device)
    info = {"weights_sha256": record.get("weights_sha256"), "class_name": record.get("class_name"),
            "init_kwargs": record.get("init_kwargs")}
    steps = args.steps if args.steps is not None else default_steps(net.img_resolution)
    summary = generate(
        net, args.out, seeds, batch_size=args.batch, num_steps=steps, sampler=args.sampler,
        sigma_init=args.sigma_init, class_idx=args.class_idx, device=device, sigma_min=args.sigma_min,
        sigma_max=args.sigma_max, rho=args.rho, S_churn=args.churn, S_min=args.s_min, S_max=args.s_max,
        S_noise=args.s_noise, network_info=info, progress=True,
    )
    print(summary.line())
    return 0
