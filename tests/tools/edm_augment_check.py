"""Check sidbench.data.augment against NVIDIA's own EDM `training/augment.py` on the same draws.

Not a test and not run in CI (EDM is not a dependency, and its licence keeps its code
out of this repository). Usage, with a checkout of https://github.com/NVlabs/edm:

    python tests/tools/edm_augment_check.py /path/to/edm [--device cuda] [--batches 4]

EDM draws from the global generator (`torch.rand`, `torch.randn`, `torch.randint`); this
script records every such call while EDM's pipe runs, then replays the recorded values, call
by call, as the per-sample `draws` of sidbench's pipe (so the draw order is checked too:
a call of another kind or shape fails). It prints the largest absolute difference of the
images and of the labels (EDM's columns; sidbench's extra always-present columns must be
zero) per setting, image size and channel count, and exits 1 above the tolerances.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]

SETTINGS = {
    "xflip": dict(p=1, xflip=1),
    "sid p=0.12": dict(p=0.12, xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1),
    "sid p=1": dict(p=1, xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1),
    "sid p=0": dict(p=0, xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1),
    "blit": dict(p=1, xflip=1, yflip=1, rotate_int=1, translate_int=1),
    "colour": dict(p=1, brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),
    "everything p=0.5": dict(p=0.5, xflip=1, yflip=1, rotate_int=1, translate_int=1, scale=1, rotate_frac=1,
                             aniso=1, translate_frac=1, brightness=1, contrast=1, lumaflip=1, hue=1,
                             saturation=1, scale_std=0.3, translate_frac_std=0.2, hue_max=0.5),
}
# Images in [-1, 1]. EDM pads each batch by a margin fitted to the batch's largest transform;
# sidbench pads every image by size - 1 (so a sample does not depend on its batch). Where
# EDM's margin is tight its filters' edge effects reach the output by up to ~5e-4 (the last
# column shows EDM itself changing that much when a sample is run alone); with EDM's margin
# set to size - 1 the two agree to float32 roundoff (~5e-5 at most). A real error (a
# quarter-pixel shift of the sampling grid) is ~1e-1.
TOLERANCE = 1e-3
LABEL_TOLERANCE = 1e-6


def edm_augment(edm_dir: Path):
    if not (edm_dir / "training" / "augment.py").is_file():
        raise SystemExit(f"{edm_dir} is not an EDM checkout (no training/augment.py)")
    sys.path.insert(0, str(edm_dir))
    return importlib.import_module("training.augment")


@contextlib.contextmanager
def recording(calls: list):
    """Record (kind, size, high, output) of every global torch.rand/randn/randint call."""
    originals = {k: getattr(torch, k) for k in ("rand", "randn", "randint")}

    def wrap(kind):
        def draw(*args, **kwargs):
            out = originals[kind](*args, **kwargs)
            high = args[0] if kind == "randint" else None
            size = args[1] if kind == "randint" else args[0]
            calls.append((kind, tuple(size), high, out.detach().cpu()))
            return out
        return draw

    try:
        for k in originals:
            setattr(torch, k, wrap(k))
        yield
    finally:
        for k, f in originals.items():
            setattr(torch, k, f)


@contextlib.contextmanager
def replaying(calls: list, j: int, b: int):
    """Make the global torch.rand/randn/randint return sample j's part of recorded calls."""
    originals = {k: getattr(torch, k) for k in ("rand", "randn", "randint")}
    calls = list(calls)

    def wrap(kind):
        def draw(*args, **kwargs):
            got_kind, size, _, out = calls.pop(0)
            assert got_kind == kind, (got_kind, kind)
            dim = 0 if size[0] == b else 1
            return out.narrow(dim, j, 1).to(kwargs.get("device") or "cpu")
        return draw

    try:
        for k in originals:
            setattr(torch, k, wrap(k))
        yield
    finally:
        for k, f in originals.items():
            setattr(torch, k, f)


class Replay:
    """A DrawSource that returns EDM's recorded draws, in order, as [b, *shape] rows."""

    def __init__(self, calls: list, b: int, device: torch.device):
        assert b > 2, "the batch dimension must be unambiguous"
        self.calls, self.b, self.device = list(calls), b, device

    def _next(self, kind: str, shape: tuple[int, ...], high: int | None = None) -> torch.Tensor:
        if not self.calls:
            raise AssertionError(f"sidbench drew {kind}{shape} after EDM's last draw")
        got_kind, size, got_high, out = self.calls.pop(0)
        if (got_kind, got_high) != (kind, high):
            raise AssertionError(f"draw order differs: EDM {got_kind}({got_high}, {size}), "
                                 f"sidbench {kind}{shape}")
        if size[0] == self.b:  # [N, 1, ...] -> [N, *shape]
            rows = out.reshape(self.b, -1)
        elif size[1] == self.b:  # EDM's [k, N, ...] -> [N, k]
            rows = out.reshape(size[0], self.b).T
        else:
            raise AssertionError(f"no batch dimension in EDM's draw {size}")
        return rows.reshape(self.b, *shape).to(self.device)

    def rand(self, *shape: int) -> torch.Tensor:
        return self._next("rand", shape)

    def randn(self, *shape: int) -> torch.Tensor:
        return self._next("randn", shape)

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        return self._next("randint", shape, high)


def test_images(b: int, c: int, size: int, seed: int, device: torch.device) -> torch.Tensor:
    """Smooth structure plus pixel noise in [-1, 1], like real images (edges and texture)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.nn.functional.interpolate(torch.rand(b, c, 4, 4, generator=g), size=size, mode="bicubic")
    return (low * 1.6 - 0.8 + 0.2 * torch.rand(b, c, size, size, generator=g)).clamp(-1, 1).to(device)


def compare(edm, ours, kwargs: dict, size: int, c: int, seed: int, b: int, device: torch.device):
    x = test_images(b, c, size, seed, device)
    torch.manual_seed(1000 + seed)
    calls: list = []
    with recording(calls):
        y_edm, l_edm = edm.AugmentPipe(**kwargs)(x)
    pipe = ours.AugmentPipe(**kwargs)
    replay = Replay(calls, b, device)
    y, labels = pipe(x, replay)
    assert not replay.calls, f"sidbench left {len(replay.calls)} of EDM's draws unused"
    keep = [i for i, name in enumerate(pipe.label_names) if pipe.enabled(name.split(".")[0])]
    dropped = [i for i in range(pipe.label_dim) if i not in keep]
    assert labels[:, dropped].abs().max().item() == 0 if dropped else True
    assert l_edm.shape == (b, len(keep)), (l_edm.shape, keep)
    alone = []
    for j in range(b):
        with replaying(calls, j, b):
            alone.append(edm.AugmentPipe(**kwargs)(x[j:j + 1])[0])
    return ((y - y_edm).abs().max().item(), (labels[:, keep] - l_edm).abs().max().item(),
            (torch.cat(alone) - y_edm).abs().max().item())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("edm", type=Path, help="path of an NVlabs/edm checkout")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, default=4, help="batches (seeds) per setting")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    edm = edm_augment(args.edm.resolve())
    sys.path.insert(0, str(REPO))
    ours = importlib.import_module("sidbench.data.augment")
    device = torch.device(args.device)
    worst = worst_label = 0.0
    print(f"{'setting':18} {'size':>5} {'C':>2}  max|image diff|  max|label diff|  EDM batch vs alone")
    for name, kwargs in SETTINGS.items():
        for size in (32, 64):
            for c in (1, 3):
                diffs = [compare(edm, ours, kwargs, size, c, seed, args.batch_size, device)
                         for seed in range(args.batches)]
                di, dl, de = (max(d[k] for d in diffs) for k in range(3))
                worst, worst_label = max(worst, di), max(worst_label, dl)
                print(f"{name:18} {size:5} {c:2}  {di:15.3e}  {dl:15.3e}  {de:18.3e}")
    print(f"largest difference: images {worst:.3e} (tolerance {TOLERANCE:g}), "
          f"labels {worst_label:.3e} (tolerance {LABEL_TOLERANCE:g})")
    return 0 if worst <= TOLERANCE and worst_label <= LABEL_TOLERANCE else 1


if __name__ == "__main__":
    raise SystemExit(main())
