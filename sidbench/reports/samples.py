"""Sample grids: a run's product network sampled for fixed seeds, tiled into one PNG.

Image (row r, column c) is seed r * n + c of EDM's per-image seeds, so it is exactly the image
`sidbench generate --network PRODUCT --seeds S` writes (with `--class-idx r % classes` for a
conditional network: each row shows one class). A one-step generator is sampled with the one-step
sampler at its recorded sigma_init; a teacher product (the `edm` method) with the suite's Heun
sampler. The tiles are scaled up by a whole factor (nearest neighbour) so small images stay
visible, and the toy2d suite's 2-D points are drawn as a scatter plot instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_PAD = 2
_MIN_WIDTH = 384  # tiles are scaled up by a whole factor until the grid is at least this wide
_POINTS_PER_CELL = 16  # a point suite draws n * n * 16 points


@dataclass
class Grid:
    """A rendered grid: PNG bytes and what it shows."""

    png: bytes
    caption: str
    seeds: str
    sampler: str
    points: bool = False  # a scatter of 2-D samples rather than tiled images


def tile(images: np.ndarray, columns: int, pad: int = _PAD, min_width: int = _MIN_WIDTH) -> np.ndarray:
    """uint8 [B, C, H, W] -> one uint8 [C, H', W'] grid, row-major, `pad` grey pixels between tiles."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 [B, C, H, W] images, got {images.dtype} {images.shape}")
    b, c, h, w = images.shape
    rows = math.ceil(b / columns)
    scale = max(1, math.ceil(min_width / max(1, columns * w + (columns + 1) * pad)))
    hs, ws = h * scale, w * scale
    out = np.full((c, rows * hs + (rows + 1) * pad, columns * ws + (columns + 1) * pad), 128, dtype=np.uint8)
    for i in range(b):
        r, col = divmod(i, columns)
        tile_ = images[i].repeat(scale, axis=1).repeat(scale, axis=2)
        y, x = pad + r * (hs + pad), pad + col * (ws + pad)
        out[:, y:y + hs, x:x + ws] = tile_
    return out


def _sampling(record: dict[str, Any], suite: Any) -> tuple[str, dict[str, Any], float, str]:
    """(sampler, heun settings, sigma_init, description) for a product network's record."""
    from sidbench.nets.native import DEFAULT_SIGMA_INIT

    if record.get("role") == "generator":
        sigma = float(record.get("sigma_init") or DEFAULT_SIGMA_INIT)
        return "onestep", {}, sigma, f"one-step sampler at sigma_init {sigma:g}"
    t = getattr(suite, "teacher", None)
    heun = {"num_steps": t.heun_steps, "sigma_min": t.sigma_min, "sigma_max": t.sigma_max, "rho": t.rho} \
        if t is not None else {"num_steps": 18}
    return "heun", heun, DEFAULT_SIGMA_INIT, f"EDM Heun sampler, {heun['num_steps']} steps"


def sample_grid(product: str | Path, *, n: int, suite: Any = None, device: Any = "cpu") -> Grid:
    """An n x n grid (seeds 0 .. n*n-1) of the product network in folder `product`."""
    from sidbench.images import encode_png
    from sidbench.nets.native import load_network, read_network_record
    from sidbench.nets.render import render_seeds

    record = read_network_record(product)
    sampler, heun, sigma, how = _sampling(record, suite)
    net = load_network(product, device=device)
    kwargs = {"sampler": sampler, "device": device, "heun": heun, "sigma_init": sigma}
    res, channels = int(net.img_resolution), int(net.img_channels)
    if res == 1 and channels == 2:  # points (toy2d)
        from sidbench.reports.plots import scatter_points

        count = n * n * _POINTS_PER_CELL
        x = render_seeds(net, list(range(count)), **kwargs).reshape(count, 2).astype(np.float64)
        pts = [(float(a), float(b)) for a, b in (x - 128.0) / 127.5]
        return Grid(scatter_points(pts, title=f"{count} samples, seeds 0-{count - 1}"),
                    f"{count} samples (seeds 0-{count - 1}), {how}", f"0-{count - 1}", sampler, points=True)
    classes = int(net.label_dim or 0)
    if classes:
        rows = [render_seeds(net, list(range(r * n, (r + 1) * n)), class_idx=r % classes, **kwargs)
                for r in range(n)]
        images = np.concatenate(rows)
        labels = ", ".join(str(r % classes) for r in range(n))
        what = f"; row r shows class r mod {classes} (rows: {labels})"
    else:
        images = render_seeds(net, list(range(n * n)), **kwargs)
        what = ""
    grid = tile(images, n)
    caption = f"{n}\u00d7{n} images at {res}\u00d7{res}, seeds 0-{n * n - 1}, {how}{what}"
    return Grid(encode_png(grid), caption, f"0-{n * n - 1}", sampler)
