"""Deterministic batching and sharding, so statistics don't depend on the number of processes.

Item i of the index list goes to rank `i % world_size`, in list order; each rank
batches its own share. Together the ranks cover every index exactly once, and a
sum of per-rank feature statistics equals the single-process one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from sidbench.data.base import ImageDataset


def shard_indices(num_items: int | Sequence[int] | np.ndarray, rank: int = 0,
                  world_size: int = 1) -> np.ndarray:
    """The indices rank `rank` handles: positions rank, rank + world_size, ... of the list."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"bad rank {rank} for world_size {world_size}")
    idx = np.arange(num_items, dtype=np.int64) if np.isscalar(num_items) else np.asarray(num_items, np.int64)
    return idx[rank::world_size]


def iterate_batches(
    dataset: ImageDataset,
    batch_size: int,
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    rank: int = 0,
    world_size: int = 1,
    num_threads: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images [B,C,H,W], int64 labels [B], int64 dataset indices [B]) for this rank.

    `indices` defaults to range(len(dataset)); the last batch may be short. `num_threads > 0`
    decodes a batch's images in a thread pool (same order and result as 0).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    mine = shard_indices(len(dataset) if indices is None else indices, rank, world_size)
    pool = ThreadPoolExecutor(num_threads) if num_threads > 0 else None
    try:
        for start in range(0, mine.size, batch_size):
            chunk = mine[start:start + batch_size]
            items = list(pool.map(dataset.__getitem__, chunk.tolist())) if pool else \
                [dataset[i] for i in chunk.tolist()]
            images = torch.from_numpy(np.stack([im for im, _ in items]))
            labels = torch.tensor([lab for _, lab in items], dtype=torch.int64)
            yield images, labels, torch.from_numpy(chunk.copy())
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


def num_batches(num_items: int, batch_size: int, rank: int = 0, world_size: int = 1) -> int:
    """How many batches `iterate_batches` yields on `rank` (for progress bars)."""
    share = len(range(rank, num_items, world_size))
    return -(-share // batch_size)
