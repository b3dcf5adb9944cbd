"""The 1000-point Karras noise grid of the DMD/DMD2 code, and uniform index draws on it.

DMD2's `main/edm/edm_guidance.py` builds `get_sigmas_karras(1000, 0.002, 80, rho=7)` (k-diffusion's
formula, float32, largest sigma first) and flips it, so index 0 is sigma_min and index 999 is
sigma_max; every loss draws an integer index per sample and reads its sigma from the grid. The
grid is computed here exactly so (float32 `linspace`, float32 arithmetic) so our sigmas are the
authors' bits. Other baselines may import this module; its API is these three functions.
"""

from __future__ import annotations

import torch

from sidbench.methods.base import Draws


def karras_grid(num: int = 1000, sigma_min: float = 0.002, sigma_max: float = 80.0,
                rho: float = 7.0) -> torch.Tensor:
    """[num] float32 sigmas in increasing order: index 0 = sigma_min, index num-1 = sigma_max.

    sigma_i = (smax^(1/rho) + r_i (smin^(1/rho) - smax^(1/rho)))^rho with r = linspace(0, 1, num),
    flipped (the authors' `torch.flip(get_sigmas_karras(...), dims=[0])`).
    """
    ramp = torch.linspace(0, 1, num)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return torch.flip((hi + ramp * (lo - hi)) ** rho, dims=[0])


def draw_index(draws: Draws, low: int, high: int) -> torch.Tensor:
    """[b, 1, 1, 1] integer indices uniform on {low, ..., high} (both included), one per sample.

    One `randint` per sample from its own generator (`Draws.randint`), so an index does not depend
    on how the batch is split. The authors' `torch.randint(low, high + 1, [b, 1, 1, 1])`.
    """
    if not 0 <= low <= high:
        raise ValueError(f"index range {low}..{high} is empty or negative")
    return draws.randint(high - low + 1, 1, 1, 1) + low


def grid_sigma(index: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """The sigmas of `index` (any shape) on `grid`, on the index's device, float32."""
    return grid.to(index.device)[index.long()]


__all__ = ["draw_index", "grid_sigma", "karras_grid"]
