"""`sidbench env`: versions, devices and which real asset files were found."""

from __future__ import annotations

import argparse
import json
import platform

from sidbench import __version__
from sidbench.assets import asset_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def environment() -> dict:
    """Library versions and accelerator facts, as recorded in result records."""
    import numpy
    import torch

    info = {
        "sidbench": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu_threads": torch.get_num_threads(),
    }
    for mod in ("torch_fidelity", "cleanfid", "open_clip", "torchvision", "diffusers", "transformers"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:
            info[mod] = None
    return info


def run(args: argparse.Namespace) -> int:
    report = {"environment": environment(), "assets": asset_report()}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    env = Table(title="environment", title_justify="left", show_header=False)
    for k, v in report["environment"].items():
        env.add_row(k, str(v))
    console.print(env)
    assets = Table(title="assets (SIDBENCH_CACHE)", title_justify="left")
    for col in ("asset", "file", "status"):
        assets.add_column(col)
    for row in report["assets"]:
        assets.add_row(row["name"], row["path"], row["status"])
    console.print(assets)
    return 0
