"""`sidbench generate`: sample images with per-image seeds into a folder or zip (API: `sidbench.generate`).

Text-to-image networks (SiD-LSG generators, EpsDenoiser or diffusers teachers) render image s from
caption s of --captions (default: the suite's evaluation captions).
"""

from __future__ import annotations

import argparse
import math

from sidbench import api
from sidbench.commands.options import RegistryChoices, alias_note, api_arguments
from sidbench.registry import SUITES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--network", "--generator", metavar="DIR_OR_NAME", default=None,
                        help="native network folder, its network.json, a named asset such as digits, or a "
                             "diffusers Stable Diffusion folder (default: the --suite's teacher)"
                             + alias_note("--generator"))
    parser.add_argument("--teacher", metavar="DIR_OR_NAME", default=None,
                        help="text-to-image: the teacher of a SiD-LSG --network, whose prompt encoder and "
                             "decoder render it (default: the one its network.json records, else the "
                             "suite's); alone, the network to sample (its old meaning)")
    parser.add_argument("--captions", metavar="FILE", default=None,
                        help="text-to-image: captions file, one per line; image s uses caption s (default: "
                             "the suite's evaluation captions; COCO: captions.txt, required unless cached)")
    parser.add_argument("--guidance", type=float, default=None, metavar="KAPPA",
                        help="text-to-image teacher: classifier-free guidance scale of its DDIM sampler, 1 = "
                             "none (default: the suite's teacher_sampler, else 7.5)")
    parser.add_argument("--out", required=True, metavar="DIR_OR_ZIP",
                        help="output folder, or a path ending in .zip (packed when complete)")
    parser.add_argument("--suite", default=None, metavar="NAME", choices=RegistryChoices(SUITES),
                        help="take the teacher and its Heun settings from this suite, and check the network "
                             "matches it (`sidbench ls suites`)")
    parser.add_argument("--seeds", default=None, metavar="LIST", help="seeds, e.g. 0-49999 or 1,2,5-10")
    parser.add_argument("--num-images", "--num", type=int, default=None, metavar="N",
                        help="number of images; alone it means seeds 0..N-1" + alias_note("--num"))
    parser.add_argument("--batch-size", "--batch", type=int, default=64, metavar="B",
                        help="images per network batch (default 64)" + alias_note("--batch"))
    parser.add_argument("--sampler", choices=api.SAMPLERS, default=None,
                        help="heun: EDM's 2nd-order sampler (teachers); onestep: G(sigma_init * z), or a "
                             "SiD-LSG generator at its t_init (default: onestep for generators, else heun; "
                             "text-to-image teachers always use DDIM)")
    parser.add_argument("--num-steps", "--steps", type=int, default=None, metavar="N",
                        help="Heun steps, NFE = 2N-1 (default: the suite's, else EDM's 18 up to 32x32, "
                             "40 above); DDIM steps of a text-to-image teacher (default: the suite's "
                             "teacher_sampler, else 50)" + alias_note("--steps"))
    parser.add_argument("--class-idx", "--class", type=int, default=None, metavar="IDX",
                        help="fixed class for a conditional net (default: random per seed, as EDM)"
                             + alias_note("--class"))
    parser.add_argument("--sigma-init", type=float, default=None,
                        help="one-step generator noise level (default: network.json's, else 2.5)")
    parser.add_argument("--sigma-min", type=float, default=None,
                        help="lowest Heun noise level (default: the suite's, else 0.002)")
    parser.add_argument("--sigma-max", type=float, default=None,
                        help="highest Heun noise level (default: the suite's, else 80)")
    parser.add_argument("--rho", type=float, default=None,
                        help="Heun time step exponent (default: the suite's, else 7)")
    parser.add_argument("--s-churn", "--churn", type=float, default=0.0,
                        help="stochasticity S_churn (0: deterministic)" + alias_note("--churn"))
    parser.add_argument("--s-min", type=float, default=0.0, help="S_min of the stochastic sampler")
    parser.add_argument("--s-max", type=float, default=math.inf, help="S_max of the stochastic sampler")
    parser.add_argument("--s-noise", type=float, default=1.0, help="S_noise of the stochastic sampler")
    parser.add_argument("--student-steps", type=int, default=None, metavar="N",
                        help="multi-step student (ADD-style): denoise at N of the noise levels its "
                             "network.json records as student_sigmas, re-noising between steps "
                             "(default: one step)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")


def run(args: argparse.Namespace) -> int:
    summary = api.generate(**api_arguments(args))
    print(summary.line())
    return 0
