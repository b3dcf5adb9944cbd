"""Streaming feature statistics whose bits do not depend on batching, order or process count.

Why exact integers: float64 sums of x x^T still depend on the order of the additions, so
EDM-style float64 accumulation gives FIDs that move in the last digits with the batch size
or the number of GPUs. Here every feature is put on a fixed-point grid (`q = rint(x * 2**38)`,
held in an int64, split into three 21-bit limbs stored as float64). The product of two limbs
is below 2**42, so a float64 matmul over at most 2048 rows adds integers below 2**53: it is
*exact* whatever order BLAS (or cuBLAS) adds them in. The exact per-chunk results go into int64
accumulators, and integer addition is associative, so any split of the images into batches,
orders or processes (all-reduce with SUM) gives the same integers and hence the same float64
mean and covariance, bit for bit.

Precision: float32 features with |x| >= 2**-15 (3.1e-5) are represented exactly; smaller
values are rounded to the 2**-38 (3.6e-12) grid, far below the float32 noise of the features
themselves. Limits: |x| < 2**24 and at most ~700k images per statistics object (int64 head
room); both are checked. Cost: six float64 matmuls per chunk instead of one (three when a
chunk's features are non-negative and below 16, as Inception pool features are: the top limb
is then zero and skipped), small next to the feature extractor. Rows are buffered until a
full chunk of 2048 is there: thin matmuls (one batch of 64 rows) run several times slower per
row and each chunk also pays fixed [D, D] integer conversions, so a chunk at a time keeps the
statistics at ~1-2% of Inception's time; the integers, and so the bits, are the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sidbench.errors import ConfigError

FRAC_BITS = 38  # grid spacing 2**-38
LIMB_BITS = 21
NUM_LIMBS = 3
CHUNK_ROWS = 2048  # 2**11 rows x limb products < 2**42  ->  sums < 2**53: exact in float64
MAX_ABS = float(2**24)  # q = x * 2**38 must stay below 2**62
MAX_IMAGES = (2**63 - 1) // (3 * 2 ** (2 * LIMB_BITS))  # accumulator T_2 sums three limb-pair products
_PAIRS = [(i, j) for i in range(NUM_LIMBS) for j in range(i, NUM_LIMBS)]


def _as_float64_tensor(features: Any) -> torch.Tensor:
    x = features if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
    x = x.detach()
    if x.ndim != 2:
        raise ConfigError(f"features must be a 2-D array [N, D], got shape {tuple(x.shape)}")
    if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64, torch.uint8)):
        raise ConfigError(f"features must be numeric, got dtype {x.dtype}")
    return x.to(torch.float64)


def _check_range(x: torch.Tensor) -> None:
    if not torch.isfinite(x).all():
        raise ConfigError("features contain NaN or Inf", hint="check the feature extractor's input and dtype")
    if x.numel() and x.abs().max().item() >= MAX_ABS:
        raise ConfigError(f"feature magnitude {x.abs().max().item():.3g} is beyond the exact-sum range "
                          f"(|x| < {MAX_ABS:.0f})", hint="rescale the features before accumulating them")


def _limbs(x: torch.Tensor) -> list[torch.Tensor]:
    """Split x (float64, `_check_range`d) into float64 tensors a_k with x ~= sum_k a_k * 2**(21k - 38)."""
    q = torch.round(x * float(2**FRAC_BITS)).to(torch.int64)  # round half to even; exact for float32 input
    mask = (1 << LIMB_BITS) - 1
    a0 = q & mask
    a1 = (q >> LIMB_BITS) & mask
    a2 = q >> (2 * LIMB_BITS)  # arithmetic shift keeps the sign: |a2| <= 2**20
    return [a.to(torch.float64) for a in (a0, a1, a2)]


class FeatureStats:
    """Exact streaming sums (n, sum x, sum x x^T) of feature vectors, optionally keeping the raw features.

    `update(features, indices)` may be called with any batching; `indices` are the global image
    indices (they order kept features; consecutive numbers are assumed without them). An index
    added twice raises, in one object, on `merge` and across processes in `all_reduce`: counting
    an image twice would silently move every number.
    """

    def __init__(self, dim: int | None = None, keep_features: bool = False,
                 device: str | torch.device = "cpu"):
        self.dim = dim
        self.keep_features = keep_features
        self.device = torch.device(device)
        self._n = 0
        self._sum: torch.Tensor | None = None  # int64 [L, D]: sum of limb k
        self._sum2: torch.Tensor | None = None  # int64 [2L-1, D, D]: sum over i+j=k of limb_i^T limb_j
        self._buffer: list[torch.Tensor] = []  # checked float64 rows not yet in the sums
        self._buffered = 0
        self._kept: list[tuple[torch.Tensor, torch.Tensor]] = []  # (int64 indices, raw features), CPU
        self._next_index = 0
        self._seen: set[int] = set()  # every index added so far (explicit or implicit)
        self._explicit = False  # some update() named its indices (sharded / distributed accumulation)
        self._reduced = False
        if dim is not None:
            self._alloc(dim)

    # -- accumulation -------------------------------------------------------------------------
    def _alloc(self, dim: int) -> None:
        self.dim = dim
        self._sum = torch.zeros(NUM_LIMBS, dim, dtype=torch.int64, device=self.device)
        self._sum2 = torch.zeros(2 * NUM_LIMBS - 1, dim, dim, dtype=torch.int64, device=self.device)

    def update(self, features: Any, indices: Any = None) -> None:
        """Add a batch [N, D] of features (torch or numpy; float32 recommended).

        Everything is checked before anything is added: a refused batch leaves no trace.
        """
        raw = features if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
        x = _as_float64_tensor(raw).to(self.device)
        n, d = x.shape
        if self.dim is not None and d != self.dim:
            raise ConfigError(f"feature dimension changed from {self.dim} to {d}")
        _check_range(x)
        if self._n + n > MAX_IMAGES:
            raise ConfigError(f"more than {MAX_IMAGES} images in one FeatureStats (int64 head room)")
        if indices is None:
            idx = torch.arange(self._next_index, self._next_index + n, dtype=torch.int64)
        else:
            idx = _index_tensor(indices)
            if idx.numel() != n:
                raise ConfigError(f"{idx.numel()} indices for {n} feature rows")
        new_indices = idx.tolist()
        fresh = set(new_indices)
        if len(fresh) != n or not self._seen.isdisjoint(fresh):
            raise ConfigError(f"image index {_first_repeat(new_indices, self._seen)} added twice to the "
                              "same statistics", hint="pass each image's global index once (shards must not "
                                                      "overlap)")
        if self._sum is None:
            self._alloc(d)
        if n:
            # buffered until the chunk is full: never alias the caller's array, which may change
            self._buffer.append(x.clone() if x.data_ptr() == raw.data_ptr() else x)
            self._buffered += n
            if self._buffered >= CHUNK_ROWS:
                self._flush()
        self._n += n
        self._seen |= fresh
        self._explicit = self._explicit or indices is not None
        if n:
            self._next_index = max(self._next_index, int(idx.max()) + 1)
        if self.keep_features:
            self._kept.append((idx, raw.detach().to("cpu").clone()))

    def _flush(self) -> None:
        """Add the buffered rows to the exact sums, a chunk of at most CHUNK_ROWS rows at a time."""
        if not self._buffer:
            return
        x = self._buffer[0] if len(self._buffer) == 1 else torch.cat(self._buffer)
        self._buffer, self._buffered = [], 0
        for start in range(0, x.shape[0], CHUNK_ROWS):
            limbs = _limbs(x[start:start + CHUNK_ROWS])
            for k, a in enumerate(limbs):
                self._sum[k] += a.sum(dim=0).to(torch.int64)  # < 2**11 * 2**21: exact
            nonzero = [bool(a.any()) for a in limbs]  # 0 <= x < 16 leaves the top limb all zero
            for i, j in _PAIRS:
                if not (nonzero[i] and nonzero[j]):
                    continue  # an all-zero limb adds nothing: skipping it changes no bit
                p = (limbs[i].T @ limbs[j]).to(torch.int64)  # integers < 2**53: exact in any order
                self._sum2[i + j] += p if i == j else p + p.T

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Add another object's sums into this one (exact, so merge order does not matter)."""
        if other._n == 0:
            return self
        if self._sum is None:
            self._alloc(other.dim)  # type: ignore[arg-type]
        if other.dim != self.dim:
            raise ConfigError(f"cannot merge statistics of dimension {other.dim} into {self.dim}")
        if self._n + other._n > MAX_IMAGES:
            raise ConfigError(f"more than {MAX_IMAGES} images in one FeatureStats (int64 head room)")
        if self._explicit and other._explicit and not self._seen.isdisjoint(other._seen):
            raise ConfigError(f"image index {min(self._seen & other._seen)} is in both statistics merged",
                              hint="merge the statistics of disjoint shards only")
        self._flush()
        other._flush()
        self._sum += other._sum.to(self.device)
        self._sum2 += other._sum2.to(self.device)
        self._n += other._n
        self._seen |= other._seen
        self._explicit = self._explicit or other._explicit
        self._next_index = max(self._next_index, other._next_index)
        if self.keep_features:
            self._kept.extend(other._kept)
        return self

    def all_reduce(self) -> FeatureStats:
        """Sum the statistics of every process (no-op without an initialised process group)."""
        from sidbench import distributed

        if not distributed.is_initialized() or distributed.world_size() == 1:
            return self
        if self._reduced:
            raise ConfigError("FeatureStats.all_reduce() called twice: the sums would be counted twice")
        dim = distributed.max_int(self.dim or 0)
        if dim == 0:
            return self
        if self._sum is None:
            self._alloc(dim)
        elif dim != self.dim:
            raise ConfigError(f"processes hold features of different dimensions ({self.dim} vs {dim})")
        self._seen = self._indices_across_processes()
        self._flush()
        self._n = distributed.sum_int(self._n)
        distributed.sum_tensor_(self._sum)
        distributed.sum_tensor_(self._sum2)
        if self.keep_features:
            idx, feats = self._local_kept()
            all_idx, all_feats = distributed.gather_rows(idx, feats)
            self._kept = [(all_idx, all_feats)]
        self._next_index = int(distributed.max_int(self._next_index))
        self._reduced = True
        return self

    def _indices_across_processes(self) -> set[int]:
        """Every process's indices, gathered (12 bytes per image): an image in two shards raises."""
        from sidbench import distributed

        if not distributed.max_int(int(self._explicit)):
            return self._seen  # implicit indices only: each process numbers its own images from 0
        self._explicit = True
        local = torch.tensor(sorted(self._seen), dtype=torch.int64)
        everyone, _ = distributed.gather_rows(local, torch.zeros(local.numel(), 1))
        unique, counts = torch.unique(everyone, return_counts=True)
        if bool((counts > 1).any()):
            raise ConfigError(f"image index {int(unique[counts > 1][0])} was added by more than one process",
                              hint="each process must take a disjoint shard (i % world == rank)")
        return set(unique.tolist())

    # -- results ------------------------------------------------------------------------------
    @property
    def num(self) -> int:
        return self._n

    def _require(self, minimum: int) -> None:
        self._flush()
        if self._n < minimum:
            raise ConfigError(f"need at least {minimum} feature vectors, have {self._n}")

    def sum(self) -> np.ndarray:
        """Exact sum of x, rounded once to float64 per limb and added in a fixed order."""
        self._require(1)
        s = self._sum.cpu().to(torch.float64)
        return _combine([s[k] for k in range(NUM_LIMBS)],
                        [LIMB_BITS * k - FRAC_BITS for k in range(NUM_LIMBS)])

    def sum_outer(self) -> np.ndarray:
        """Sum of x x^T as float64 (fixed combination order: same integers -> same bits)."""
        self._require(1)
        s2 = self._sum2.cpu().to(torch.float64)
        return _combine([s2[k] for k in range(2 * NUM_LIMBS - 1)],
                        [LIMB_BITS * k - 2 * FRAC_BITS for k in range(2 * NUM_LIMBS - 1)])

    def mean(self) -> np.ndarray:
        return self.sum() / self._n

    def cov(self, unbiased: bool = True) -> np.ndarray:
        """Covariance; unbiased (N-1) is EDM's and ADM's convention, biased (N) SiD's in-training one."""
        self._require(2 if unbiased else 1)
        mu = self.mean()
        sigma = self.sum_outer() - self._n * np.outer(mu, mu)
        sigma = sigma / (self._n - 1 if unbiased else self._n)
        return (sigma + sigma.T) / 2  # exactly symmetric (it already is up to rounding order)

    def _local_kept(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._kept:
            return torch.zeros(0, dtype=torch.int64), torch.zeros(0, self.dim or 0, dtype=torch.float32)
        idx = torch.cat([i for i, _ in self._kept])
        wide = any(f.dtype == torch.float64 for _, f in self._kept)
        feats = torch.cat([f.to(torch.float64 if wide else torch.float32) for _, f in self._kept])
        return idx, feats

    def features(self) -> np.ndarray:
        """Kept raw features, sorted by global image index (so order never depends on batching)."""
        if not self.keep_features:
            raise ConfigError("raw features were not kept", hint="create FeatureStats(keep_features=True)")
        idx, feats = self._local_kept()
        order = torch.argsort(idx, stable=True)
        sorted_idx = idx[order]
        if sorted_idx.numel() > 1 and bool((sorted_idx[1:] == sorted_idx[:-1]).any()):
            raise ConfigError("the same image index was added twice",
                              hint="pass each image's global index once")
        return feats[order].numpy()

    def indices(self) -> np.ndarray:
        idx, _ = self._local_kept()
        return np.sort(idx.numpy())

    def to_npz_dict(self, unbiased: bool = True) -> dict[str, np.ndarray]:
        """EDM-compatible arrays (`mu`, `sigma`) plus the count and the covariance convention."""
        return {
            "mu": self.mean(),
            "sigma": self.cov(unbiased=unbiased),
            "num_images": np.asarray(self._n, dtype=np.int64),
            "cov_unbiased": np.asarray(bool(unbiased)),
        }


def _index_tensor(indices: Any) -> torch.Tensor:
    """Image indices as a flat int64 CPU tensor; non-integer indices are refused, not truncated."""
    arr = indices.detach().cpu().numpy() if isinstance(indices, torch.Tensor) else np.asarray(indices)
    if arr.size and arr.dtype.kind not in "iu":
        raise ConfigError(f"image indices must be integers, got dtype {arr.dtype}")
    return torch.from_numpy(arr.astype(np.int64, copy=False).reshape(-1))


def _first_repeat(indices: list[int], seen: set[int]) -> int:
    inside: set[int] = set()
    for i in indices:
        if i in seen or i in inside:
            return i
        inside.add(i)
    raise AssertionError("no repeated index")  # only called when there is one


def _combine(parts: list[torch.Tensor], exponents: list[int]) -> np.ndarray:
    """sum_k parts[k] * 2**exponents[k], most significant first (deterministic order)."""
    out = None
    for part, e in sorted(zip(parts, exponents, strict=True), key=lambda pe: -pe[1]):
        term = torch.ldexp(part, torch.tensor(float(e), dtype=torch.float64))
        out = term if out is None else out + term
    return out.numpy()
