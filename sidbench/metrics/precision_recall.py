"""Improved precision and recall (Kynkaanniemi et al. 2019), in batches.

Argument order is (real, fake), and it matters:
- precision = fraction of *fake* samples inside the real manifold (the union of balls around each
  real sample with radius = distance to its k-th nearest real neighbour, self excluded);
- recall    = fraction of *real* samples inside the fake manifold.
Conventions follow torch-fidelity 0.4.0 `metric_prc.py`: radius = `kthvalue(k + 1)` of the row of
distances to the same set (the 0 self-distance is the first), membership test `dist <= radius`,
distances from `torch.cdist` (same values as theirs). Memory is O(batch_size * N): never N x N.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sidbench.errors import ConfigError

_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class PrecisionRecall:
    precision: float
    recall: float
    k: int

    @property
    def f_score(self) -> float:
        return 2 * self.precision * self.recall / max(1e-5, self.precision + self.recall)

    def as_dict(self) -> dict:
        return {"precision": self.precision, "recall": self.recall, "f_score": self.f_score, "k": self.k}


def _to_tensor(x, dtype: str):
    import torch  # lazy: keeps `import sidbench.metrics` free of torch

    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(getattr(torch, dtype))


def knn_radii(feats, k: int, batch_size: int):
    """Distance of each row to its k-th nearest other row (the (k+1)-th smallest, counting itself).

    Distances are symmetric, so only blocks (i, j >= i) are computed and each serves both its rows
    and its columns: half the work of a full pass. A running top-(k+1) per row keeps memory at
    O(batch_size^2 + N * k).
    """
    import torch

    n = feats.shape[0]
    best = torch.full((n, k + 1), float("inf"), dtype=feats.dtype)

    def fold(rows: slice, d) -> None:
        best[rows] = torch.cat([best[rows], d], dim=1).topk(k + 1, dim=1, largest=False).values

    for i in range(0, n, batch_size):
        rows_i = slice(i, min(i + batch_size, n))
        for j in range(i, n, batch_size):
            rows_j = slice(j, min(j + batch_size, n))
            d = torch.cdist(feats[rows_i], feats[rows_j])
            fold(rows_i, d)
            if j != i:
                fold(rows_j, d.T)
    return best[:, k]


def cross_coverage(real, fake, real_radii, fake_radii, batch_size: int) -> tuple[float, float]:
    """One pass over fake x real distance blocks gives both directions (3 distance passes in all, as
    torch-fidelity's full mode, but O(batch_size * N) memory)."""
    import torch

    fake_inside = 0
    real_inside = torch.zeros(real.shape[0], dtype=torch.bool)
    for start in range(0, fake.shape[0], batch_size):
        block = fake[start:start + batch_size]
        d = torch.cdist(block, real)  # [b_fake, N_real]
        fake_inside += int((d <= real_radii.unsqueeze(0)).any(dim=1).sum())
        real_inside |= (d <= fake_radii[start:start + batch_size].unsqueeze(1)).any(dim=0)
    return fake_inside / fake.shape[0], float(real_inside.sum()) / real.shape[0]


def precision_recall(real_features: Any, fake_features: Any, k: int = 3, batch_size: int = 2000,
                     dtype: str = "float32") -> PrecisionRecall:
    """(precision, recall) of fake features against real features, k-NN manifolds."""
    if dtype not in _DTYPES:
        raise ConfigError(f"unsupported distance dtype '{dtype}'", hint="use float32 or float64")
    real = _to_tensor(real_features, dtype)
    fake = _to_tensor(fake_features, dtype)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ConfigError(f"precision/recall needs two [N, D] arrays of equal D, got {tuple(real.shape)} "
                          f"and {tuple(fake.shape)}")
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ConfigError(f"k={k} needs more than {k} samples in each set, "
                          f"got {real.shape[0]} and {fake.shape[0]}")
    real_radii = knn_radii(real, k, batch_size)
    fake_radii = knn_radii(fake, k, batch_size)
    precision, recall = cross_coverage(real, fake, real_radii, fake_radii, batch_size)
    return PrecisionRecall(precision=precision, recall=recall, k=k)
