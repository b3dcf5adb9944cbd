"""Where every random number of a run comes from: (run seed, step, purpose, stream, global sample index).

Sample j of step k draws from its own CPU generator, seeded from (seed, k, purpose,
stream, j) as EDM seeds image i from i alone. So the numbers a sample sees do not
depend on how the batch is split over processes and accumulation rounds, and a run
resumed at step k draws exactly what the uninterrupted run drew, with no generator
state saved. The data order is a permutation per epoch seeded from (seed, epoch):
sample j of step k reads position k * batch + j of that stream.

A seed is mixed once with numpy's SeedSequence per (seed, step, purpose, stream) and
then per sample with the splitmix64 finaliser (vectorised), so a step's seeds cost
microseconds, not one SeedSequence per sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

# Purposes: each an independent stream family.
DRAWS = 1  # the method's draws (stream = index of the update in the method's list)
DATA = 2  # generated training data (toy2d's mixture points)
DROPOUT = 3  # the global RNG that dropout uses, per (step, update, process, round)
INIT = 4  # "scratch" network initialisation (stream = index of the network)
ORDER = 5  # the data permutation of an epoch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _base(seed: int, *words: int) -> np.ndarray:
    return np.random.SeedSequence([int(seed), *(int(w) for w in words)]).generate_state(2, np.uint64)


def scalar_seed(seed: int, *words: int) -> int:
    """One 63-bit seed for (seed, *words): for torch.manual_seed (dropout, scratch init)."""
    return int(_base(seed, *words)[0] >> np.uint64(1))


def sample_seeds(seed: int, step: int, purpose: int, stream: int, indices: Sequence[int] | np.ndarray
                 ) -> np.ndarray:
    """63-bit seeds (uint64) of samples `indices` for (seed, step, purpose, stream)."""
    base = _base(seed, step, purpose, stream)
    j = np.asarray(indices, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = _mix64(j * _GOLDEN + base[0]) ^ base[1]
    return _mix64(x) >> np.uint64(1)


def sample_generators(seed: int, step: int, purpose: int, stream: int, indices: Sequence[int] | np.ndarray
                      ) -> list[torch.Generator]:
    """One CPU generator per sample, seeded by `sample_seeds`."""
    return [torch.Generator().manual_seed(int(s)) for s in sample_seeds(seed, step, purpose, stream, indices)]


class DataOrder:
    """Dataset index of each stream position: a fresh permutation of the N items per epoch."""

    def __init__(self, seed: int, num_items: int):
        if num_items < 1:
            raise ValueError("a data order needs at least one item")
        self.seed = int(seed)
        self.num_items = int(num_items)
        self._cache: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        perm = self._cache.get(epoch)
        if perm is None:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, ORDER, int(epoch)])))
            perm = rng.permutation(self.num_items)
            if len(self._cache) > 4:  # a step spans at most a few epochs; keep memory flat
                self._cache.pop(min(self._cache))
            self._cache[epoch] = perm
        return perm

    def indices(self, positions: np.ndarray) -> np.ndarray:
        """Dataset indices at stream `positions` (int64)."""
        positions = np.asarray(positions, dtype=np.int64)
        epochs, offsets = np.divmod(positions, self.num_items)
        out = np.empty_like(positions)
        for epoch in np.unique(epochs):
            mask = epochs == epoch
            out[mask] = self.permutation(int(epoch))[offsets[mask]]
        return out
