"""The dataset interface every reader implements, and the identity check against a suite.

Index conventions follow EDM's `training/dataset.py` so that statistics computed
here match statistics computed there:

- `max_size` (applied first): when the file holds more than `max_size` images,
  `np.random.RandomState(random_seed % 2**31).shuffle(arange(N))` is truncated
  to `max_size` and **sorted**, so the subset keeps file order.
- `xflip` (applied second): the index list is repeated; index `i >= n` returns
  image `i - n` mirrored left-right (`image[:, :, ::-1]`), with the same label.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from sidbench.errors import DatasetError

if TYPE_CHECKING:
    from sidbench.suites.base import DatasetIdentity


def subset_indices(num_images: int, max_size: int | None, random_seed: int = 0) -> np.ndarray:
    """EDM's seeded subset: shuffle arange(N) with RandomState(seed), keep max_size, sort."""
    idx = np.arange(num_images, dtype=np.int64)
    if max_size is not None:
        if max_size < 1:
            raise DatasetError(f"max_size must be at least 1, got {max_size}",
                               hint="leave max_size unset to use every image")
        if num_images > max_size:
            np.random.RandomState(random_seed % (1 << 31)).shuffle(idx)
            idx = np.sort(idx[:max_size])
    return idx


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
        self.source = source
        self._raw_idx = subset_indices(self.num_images, max_size, random_seed)
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


def check_image(image: np.ndarray, expected: tuple[int, int, int] | None, where: str) -> np.ndarray:
    """Turn a decoded HW/HWC array into uint8 CHW and check it against the dataset's shape."""
    if image.dtype != np.uint8:
        raise DatasetError(f"{where}: pixel type {image.dtype}, expected 8-bit",
                           hint="convert the image to 8-bit grayscale or RGB")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise DatasetError(f"{where}: cannot read as an image array of shape {image.shape}")
    chw = image.transpose(2, 0, 1)
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


# (num_images, resolution) of well-known datasets, to say what a wrong file probably is.
_KNOWN = {
    (50_000, 32): "CIFAR-10 train",
    (10_000, 32): "CIFAR-10 test",
    (70_000, 64): "FFHQ 64x64",
    (15_803, 64): "AFHQv2 64x64",
    (1_281_167, 64): "ImageNet 64x64 train",
    (1_797, 16): "scikit-learn digits",
}


def _looks_like(num_images: int, resolution: int, channels: int, exclude: str) -> str | None:
    """Name of a registered suite dataset (or well-known dataset) with this count and shape."""
    try:
        from sidbench.registry import SUITES

        for suite_name in SUITES.names():
            ident = getattr(SUITES.get(suite_name), "dataset", None)
            if (ident is not None and ident.name != exclude and ident.num_images == num_images
                    and ident.resolution == resolution and ident.channels == channels):
                return f"{ident.name}, the {suite_name} suite's data"
    except Exception:  # naming a lookalike is a courtesy; never fail the check because of it
        pass
    return _KNOWN.get((num_images, resolution))


def check_dataset(dataset: ImageDataset, identity: DatasetIdentity) -> None:
    """Refuse a dataset that is not the one a suite expects.

    Compares resolution, channels, label_dim, the number of images in the file
    (before max_size and xflip), and the sha256 when the identity pins one.
    Every mismatch is listed in one DatasetError with expected vs found values.
    """
    problems = []
    if dataset.resolution != identity.resolution:
        problems.append(f"resolution {dataset.resolution} (expected {identity.resolution})")
    if dataset.channels != identity.channels:
        problems.append(f"{dataset.channels} channel(s) (expected {identity.channels})")
    if dataset.label_dim != identity.label_dim:
        if identity.label_dim and not dataset.label_dim:
            problems.append(f"no labels (expected {identity.label_dim} classes; is dataset.json missing, "
                            "or were labels turned off?)")
        else:
            problems.append(f"label_dim {dataset.label_dim} (expected {identity.label_dim})")
    if dataset.num_images != identity.num_images:
        problems.append(f"{dataset.num_images:,} images (expected {identity.num_images:,})")
    sha_checked = False
    if identity.sha256 and not problems:  # hashing a big file is slow; skip it when already wrong
        found = dataset.identity_sha256()
        sha_checked = True
        if found != identity.sha256:
            problems.append(f"sha256 {found} (expected {identity.sha256})")
    if not problems:
        return
    expected = identity.filename or identity.name
    msg = (f"{dataset.source or dataset.name} is not the expected dataset {identity.name} "
           f"({expected}, {identity.num_images:,} images {identity.resolution}x{identity.resolution}x"
           f"{identity.channels}): it has " + "; ".join(problems))
    guess = _looks_like(dataset.num_images, dataset.resolution, dataset.channels, identity.name)
    if guess and dataset.num_images != identity.num_images:
        msg += f" (it looks like {guess})"
    hint = f"point the suite at {expected}"
    if sha_checked:
        hint += " (the exact published file: a re-encoded or extracted copy has a different sha256)"
    raise DatasetError(msg, hint=hint)
