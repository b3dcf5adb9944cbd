"""The dataset interface every reader implements.

Index conventions follow EDM's `training/dataset.py` so that statistics computed
here match statistics computed there:

- `max_size` (applied first): a limited read under a named subset policy
  (`sidbench.data.subset`); the default, "edm-seeded", is EDM's: when the file holds
  more than `max_size` images, `np.random.RandomState(random_seed % 2**31).shuffle(arange(N))`
  is truncated to `max_size` and **sorted**, so the subset keeps file order.
- `xflip` (applied second): the index list is repeated; index `i >= n` returns
  image `i - n` mirrored left-right (`image[:, :, ::-1]`), with the same label.

The identity check of a dataset against a suite lives in `sidbench.suites.dataset_check`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from sidbench.data.subset import describe_subset, subset_indices
from sidbench.errors import DatasetError


class ImageDataset:
    """uint8 CHW images with integer labels, indexed like EDM's datasets.

    Subclasses call `__init__` with what they know about the file and implement
    `_load_raw_image(raw_idx)` (uint8 [C,H,W]) and `_compute_identity()`.
    `labels` is aligned with the dataset's own indices (after max_size and xflip):
    `labels[i] == self[i][1]`; it is None when the dataset is unlabeled or
    `use_labels=False`, and then every label is 0 and `label_dim` is 0.
    """

    def __init__(
        self,
        *,
        name: str,
        num_images: int,
        resolution: int,
        channels: int,
        raw_labels: np.ndarray | None,
        label_dim: int | None = None,
        use_labels: bool = True,
        xflip: bool = False,
        max_size: int | None = None,
        random_seed: int = 0,
        source: str = "",
        subset: str = "edm-seeded",
    ):
        if num_images < 1:
            raise DatasetError(f"dataset {name!r} has no images", hint="check the path")
        self.name = name
        self.num_images = int(num_images)  # images in the file, before max_size and xflip
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.xflip = bool(xflip)
        self.max_size = max_size
        self.random_seed = int(random_seed)
        self.subset = subset
        self.source = source
        self._raw_idx = subset_indices(self.num_images, max_size, subset, seed=self.random_seed,
                                       what=f"dataset {name!r}")
        self._base_len = int(self._raw_idx.size)
        self._identity: str | None = None

        self._raw_labels: np.ndarray | None = None
        self.label_dim = 0
        if raw_labels is not None and use_labels:
            raw = np.asarray(raw_labels)
            if raw.shape != (self.num_images,):
                n_lab = raw.shape[0] if raw.ndim else 0
                raise DatasetError(f"{name}: {n_lab} labels for {self.num_images} images",
                                   hint="every image needs exactly one integer label")
            raw = raw.astype(np.int64)
            if raw.size and raw.min() < 0:
                raise DatasetError(f"{name}: negative label {int(raw.min())}",
                                   hint="labels are 0..label_dim-1")
            dim = int(raw.max()) + 1 if label_dim is None else int(label_dim)
            if raw.size and raw.max() >= dim:
                raise DatasetError(f"{name}: label {int(raw.max())} is out of range for {dim} classes")
            self._raw_labels = raw
            self.label_dim = dim

    # --- to implement -------------------------------------------------------------------------
    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        raise NotImplementedError

    def _compute_identity(self) -> str:
        raise NotImplementedError

    # --- public -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._base_len * (2 if self.xflip else 1)

    def _resolve(self, i: int) -> tuple[int, bool]:
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} images")
        flip = i >= self._base_len
        return int(self._raw_idx[i - self._base_len if flip else i]), flip

    def raw_index(self, i: int) -> int:
        """Index in the file of dataset item i (after max_size and xflip)."""
        return self._resolve(i)[0]

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        raw, flip = self._resolve(i)
        image = self._load_raw_image(raw)
        if flip:
            image = image[:, :, ::-1]
        label = int(self._raw_labels[raw]) if self._raw_labels is not None else 0
        return image.copy(order="C"), label  # a copy: callers may write to it

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        for i in range(len(self)):
            yield self[i]

    @property
    def labels(self) -> np.ndarray | None:
        """int64 labels in dataset order (length len(self)), or None when unlabeled."""
        if self._raw_labels is None:
            return None
        idx = np.tile(self._raw_idx, 2) if self.xflip else self._raw_idx
        return self._raw_labels[idx].copy()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.resolution, self.resolution)

    def identity_sha256(self) -> str:
        """Hex sha256 that names the source data (cached after the first call)."""
        if self._identity is None:
            self._identity = self._compute_identity()
        return self._identity

    def describe(self) -> dict[str, Any]:
        """What a result record stores about the data it used."""
        return {
            "name": self.name,
            "count": len(self),
            "num_images": self.num_images,
            "resolution": self.resolution,
            "channels": self.channels,
            "label_dim": self.label_dim,
            "xflip": self.xflip,
            "max_size": self.max_size,
            "subset": describe_subset(self.subset, self._base_len, self.num_images, self.random_seed),
            "sha256": self.identity_sha256(),
            "source": self.source,
        }

    def close(self) -> None:
        """Release open file handles (no-op for in-memory datasets)."""

    def __enter__(self) -> ImageDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, len={len(self)}, "
                f"shape={self.image_shape}, label_dim={self.label_dim})")


def check_image(chw: np.ndarray, expected: tuple[int, int, int] | None, where: str) -> np.ndarray:
    """Check a decoded uint8 [C, H, W] image: square, and the dataset's shape when one is known."""
    c, h, w = chw.shape
    if h != w:
        raise DatasetError(f"{where}: image is {w}x{h}, not square",
                           hint="crop or resize every image to the same square resolution")
    if expected is not None and chw.shape != tuple(expected):
        raise DatasetError(
            f"{where}: image is {w}x{h} with {c} channel(s), but the dataset's images are "
            f"{expected[2]}x{expected[1]} with {expected[0]} channel(s)",
            hint="all images in a dataset must share one resolution and channel count; "
                 "fix or remove this file",
        )
    return chw
