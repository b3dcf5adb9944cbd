"""Kernel Inception Distance with torch-fidelity 0.4.0's defaults, reimplemented.

Polynomial kernel k(x, y) = (x.y / d + 1)^3; unbiased MMD^2 estimate (diagonals of K_XX and
K_YY dropped, K_XY summed whole and divided by m^2); 100 subsets of 1,000 rows each. Subsets
come from one `np.random.RandomState(seed)`: per subset, first `choice(N1, m, replace=False)`
for the first set, then for the second, exactly as torch-fidelity draws them, so identical
features give identical subsets. Difference: kernels are computed in float64 by default;
torch-fidelity computes them in the features' dtype (float32 for its extractors). Pass
`dtype=np.float32` to reproduce that arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sidbench.errors import ConfigError


@dataclass(frozen=True)
class KIDResult:
    mean: float
    std: float
    values: tuple[float, ...] = field(repr=False)

    def as_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "num_subsets": len(self.values)}


def _to_numpy(x, dtype) -> np.ndarray:
    a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)  # torch without importing it
    return a.astype(dtype, copy=False)


def _poly(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                  coef0: float = 1.0) -> float:
    """Unbiased MMD^2 between equal-size sets x, y with the polynomial kernel."""
    m = x.shape[0]
    if y.shape[0] != m:
        raise ConfigError(f"MMD subsets must have equal size, got {m} and {y.shape[0]}")
    g = 1.0 / x.shape[1] if gamma is None else gamma
    k_xx = _poly(x, x, degree, g, coef0)
    k_yy = _poly(y, y, degree, g, coef0)
    k_xy = _poly(x, y, degree, g, coef0)
    off_xx = (k_xx.sum(axis=1) - np.diagonal(k_xx)).sum()
    off_yy = (k_yy.sum(axis=1) - np.diagonal(k_yy)).sum()
    return float((off_xx + off_yy) / (m * (m - 1)) - 2 * k_xy.sum(axis=0).sum() / (m * m))


def kid(feats1: Any, feats2: Any, num_subsets: int = 100, subset_size: int = 1000, degree: int = 3,
        gamma: float | None = None, coef0: float = 1.0, seed: int = 2020,
        dtype: Any = np.float64) -> KIDResult:
    """KID mean and std (np.std, ddof=0) over random subsets, torch-fidelity's subset draws."""
    x = _to_numpy(feats1, dtype)
    y = _to_numpy(feats2, dtype)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ConfigError(f"KID needs two [N, D] feature arrays of equal D, got {x.shape} and {y.shape}")
    if min(len(x), len(y)) < subset_size:
        raise ConfigError(f"KID subset size {subset_size} exceeds the number of samples ({len(x)}, {len(y)})",
                          hint="use a smaller subset size or more images")
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(num_subsets):
        a = x[rng.choice(len(x), subset_size, replace=False)]
        b = y[rng.choice(len(y), subset_size, replace=False)]
        values.append(mmd2_unbiased(a, b, degree, gamma, coef0))
    return KIDResult(mean=float(np.mean(values)), std=float(np.std(values)), values=tuple(values))
