"""iterate_batches: sharding covers every index once, in a fixed order, for any process count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sidbench.data import ImageDataset
from sidbench.data.loader import iterate_batches, num_batches, shard_indices


class _Numbered(ImageDataset):
    """Image i is filled with i % 256 (channel 0) and i // 256 (channel 1); label i % 7."""

    def __init__(self, n: int, **kw):
        super().__init__(name="numbered", num_images=n, resolution=4, channels=2,
                         raw_labels=np.arange(n) % 7, **kw)

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        image = np.zeros((2, 4, 4), np.uint8)
        image[0], image[1] = raw_idx % 256, raw_idx // 256
        image[0, 0, 0] = 0  # asymmetric, so an xflip is visible
        return image

    def _compute_identity(self) -> str:
        return "0" * 64


def _raw(images: torch.Tensor) -> list[int]:
    return (images[:, 0, 1, 1].long() + 256 * images[:, 1, 1, 1].long()).tolist()


@pytest.mark.parametrize("world_size", [1, 2, 3, 7])
def test_ranks_cover_every_index_exactly_once(world_size):
    ds = _Numbered(23)
    seen = []
    for rank in range(world_size):
        batches = list(iterate_batches(ds, 4, rank=rank, world_size=world_size))
        assert len(batches) == num_batches(len(ds), 4, rank, world_size)
        for images, labels, idx in batches:
            assert images.dtype == torch.uint8 and images.shape[1:] == (2, 4, 4)
            assert labels.dtype == torch.int64 and idx.dtype == torch.int64
            assert _raw(images) == idx.tolist()
            assert labels.tolist() == [i % 7 for i in idx.tolist()]
            assert all(i % world_size == rank for i in idx.tolist())
            seen += idx.tolist()
    assert sorted(seen) == list(range(23))


def test_order_and_batch_sizes_are_fixed():
    ds = _Numbered(10)
    got = [idx.tolist() for _, _, idx in iterate_batches(ds, 3)]
    assert got == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    got = [idx.tolist() for _, _, idx in iterate_batches(ds, 2, rank=1, world_size=3)]
    assert got == [[1, 4], [7]]


def test_explicit_indices_and_threads_give_the_same_result():
    ds = _Numbered(300, xflip=True)
    indices = np.random.RandomState(0).permutation(len(ds))[:50]
    plain = list(iterate_batches(ds, 8, indices=indices, rank=1, world_size=2))
    threaded = list(iterate_batches(ds, 8, indices=indices, rank=1, world_size=2, num_threads=3))
    assert [b[2].tolist() for b in plain] == [b[2].tolist() for b in threaded]
    for (a, la, _), (b, lb, _) in zip(plain, threaded, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
    flat = torch.cat([b[2] for b in plain]).tolist()
    assert flat == indices[1::2].tolist()
    images, labels = torch.cat([b[0] for b in plain]), torch.cat([b[1] for b in plain])
    assert any(i >= 300 for i in flat)  # mirrored items are served too
    for k, i in enumerate(flat):
        image, label = ds[i]
        assert torch.equal(images[k], torch.from_numpy(image)) and labels[k] == label


def test_shard_indices_and_errors():
    assert shard_indices(7, 1, 3).tolist() == [1, 4]
    assert shard_indices([9, 8, 7, 6], 0, 2).tolist() == [9, 7]
    with pytest.raises(ValueError):
        shard_indices(5, 2, 2)
    with pytest.raises(ValueError):
        next(iterate_batches(_Numbered(3), 0))
    assert list(iterate_batches(_Numbered(2), 4, rank=2, world_size=3)) == []
