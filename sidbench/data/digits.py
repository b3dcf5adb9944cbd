"""scikit-learn's handwritten digits as a real, shipped, tiny image dataset (the embedded suite).

Transform (deterministic, documented because it defines the suite's data):
1. `sklearn.datasets.load_digits()`: 1,797 images of 8x8 float values 0..16
   (0 = background, 16 = ink) and labels 0..9.
2. To uint8: `rint(v * 255 / 16)`, so 0 -> 0 and 16 -> 255.
3. Resize each 8x8 image to `resolution` x `resolution` with PIL
   `Image.resize(..., Resampling.BILINEAR)` on mode "L" (no resize at 8).
4. One channel: arrays are uint8 [N, 1, R, R].
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np
import PIL.Image

from sidbench.data.base import ImageDataset
from sidbench.errors import DatasetError

NUM_IMAGES = 1797
SPLITS = ("all", "train", "held_out")


@functools.lru_cache(maxsize=4)
def digits_arrays(resolution: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [1797, 1, R, R] images, int64 [1797] labels) after the module's transform."""
    if not 4 <= resolution <= 512:
        raise DatasetError(f"digits resolution {resolution} is out of range", hint="use 4..512, e.g. 16")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    if resolution == 8:
        big = small
    else:
        big = np.stack([
            np.asarray(PIL.Image.fromarray(im, mode="L").resize((resolution, resolution),
                                                                 PIL.Image.Resampling.BILINEAR))
            for im in small
        ])
    images = big[:, None, :, :].copy()
    images.setflags(write=False)
    labels = np.asarray(bunch.target, dtype=np.int64)
    labels.setflags(write=False)
    return images, labels


def digits_split(seed: int = 0, held_out_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split of the 1,797 indices into (train, held_out), both sorted.

    Per class c (in order 0..9): its indices are shuffled with one shared
    `np.random.RandomState(seed)` and the first `round(n_c * held_out_fraction)` are held out.
    """
    if not 0.0 < held_out_fraction < 1.0:
        raise DatasetError(f"held_out_fraction {held_out_fraction} must be in (0, 1)")
    _, labels = digits_arrays(8)
    rng = np.random.RandomState(seed)
    held = []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        held.append(idx[: int(round(idx.size * held_out_fraction))])
    held_idx = np.sort(np.concatenate(held))
    train_idx = np.setdiff1d(np.arange(labels.size), held_idx)
    return train_idx.astype(np.int64), held_idx.astype(np.int64)


class DigitsDataset(ImageDataset):
    """The digits as an ImageDataset: 1 channel, 10 classes, `resolution` x `resolution`.

    `split`: "all" (1,797 images), or "train" / "held_out" from `digits_split(seed=0, 0.2)`
    (for a classifier that must not see the images it is tested on).
    """

    def __init__(self, resolution: int = 16, use_labels: bool = True, xflip: bool = False, *,
                 split: str = "all", max_size: int | None = None, random_seed: int = 0,
                 subset: str = "edm-seeded"):
        if split not in SPLITS:
            raise DatasetError(f"unknown digits split {split!r}", hint=f"use one of {', '.join(SPLITS)}")
        images, labels = digits_arrays(resolution)
        if split != "all":
            train_idx, held_idx = digits_split()
            sel = train_idx if split == "train" else held_idx
            images, labels = images[sel], labels[sel]
        self._images = images
        self._all_labels = labels
        self.split = split
        super().__init__(
            name=f"digits-{resolution}" + ("" if split == "all" else f"-{split}"),
            num_images=images.shape[0], resolution=resolution, channels=1,
            raw_labels=labels, label_dim=10, use_labels=use_labels, xflip=xflip,
            max_size=max_size, random_seed=random_seed, source="sklearn.datasets.load_digits",
            subset=subset,
        )

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        return self._images[raw_idx]

    def _compute_identity(self) -> str:
        """sha256 of b"sidbench.digits.v1\\0", the shape as text, the uint8 pixels and int64 labels (LE)."""
        digest = hashlib.sha256(b"sidbench.digits.v1\0")
        digest.update(repr(tuple(self._images.shape)).encode() + b"\0")
        digest.update(np.ascontiguousarray(self._images).tobytes())
        digest.update(self._all_labels.astype("<i8").tobytes())
        return digest.hexdigest()

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All images (uint8 [N,1,R,R], read-only) and labels in file order, before max_size/xflip."""
        return self._images, self._all_labels
