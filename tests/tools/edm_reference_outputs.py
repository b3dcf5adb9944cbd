"""Regenerate `REFERENCE_OUTPUTS` of tests/nets/test_precond.py with NVIDIA's own EDM code.

Not a test and not run in CI (EDM is not a dependency, and its licence keeps its code
out of this repository). Usage, with a checkout of https://github.com/NVlabs/edm:

    python tests/tools/edm_reference_outputs.py /path/to/edm

It builds EDM's `training.networks` preconditioners for the configs, seeds, weight
randomisation and inputs the test uses (imported from the test, so both stay in
step), and prints the dict literal the test hard-codes. The values were produced
with EDM commit 008a4e5 on CPU.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def edm_networks(edm_dir: Path):
    """EDM's `training.networks`, imported from the checkout at `edm_dir`."""
    if not (edm_dir / "training" / "networks.py").is_file():
        raise SystemExit(f"{edm_dir} is not an EDM checkout (no training/networks.py)")
    sys.path.insert(0, str(edm_dir))
    return importlib.import_module("training.networks")


def reference_outputs(networks, models: dict, randomise, keys: list[tuple[str, str]]) -> dict:
    """(mean, mean |.|, out[0,0,0,0], out[1,2,15,15], out[0,1,7,9]) per (preconditioner, architecture)."""
    out = {}
    for class_name, arch in keys:
        torch.manual_seed(0)  # FourierEmbedding draws its buffer from the global generator
        kwargs = dict(img_resolution=16, img_channels=3, label_dim=4, augment_dim=9, num_blocks=1, dropout=0,
                      **models[arch])
        net = randomise(getattr(networks, class_name)(**kwargs))
        g = torch.Generator().manual_seed(1)
        x, aug = torch.randn(2, 3, 16, 16, generator=g), torch.randn(2, 9, generator=g)
        with torch.no_grad():
            y = net(x, torch.tensor([0.3, 7.0]), torch.eye(4)[[1, 3]], augment_labels=aug)
        out[(class_name, arch)] = (y.mean().item(), y.abs().mean().item(), y[0, 0, 0, 0].item(),
                                   y[1, 2, 15, 15].item(), y[0, 1, 7, 9].item())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("edm", type=Path, help="path of an NVlabs/edm checkout")
    args = parser.parse_args(argv)
    networks = edm_networks(args.edm.resolve())
    sys.path.insert(0, str(REPO))
    test = importlib.import_module("tests.nets.test_precond")
    torch.set_num_threads(1)  # as the tests run (tests/conftest.py)
    values = reference_outputs(networks, test.REFERENCE_MODELS, test.randomise, list(test.REFERENCE_OUTPUTS))
    print("REFERENCE_OUTPUTS = {")
    for (class_name, arch), row in values.items():
        print(f"    ({class_name!r}, {arch!r}): ({', '.join(f'{v:.6g}' for v in row)}),".replace("'", '"'))
    print("}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
