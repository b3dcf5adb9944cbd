"""Dataset readers: EDM dataset_tool zips/folders, plain image folders, CIFAR-10's tarball,
scikit-learn digits, the 2-D toy mixture and COCO captions; and the named subset policy."""

from __future__ import annotations

import os
from pathlib import Path

from sidbench.data.base import ImageDataset
from sidbench.data.subset import SUBSETS, subset_indices
from sidbench.errors import DatasetError

__all__ = ["SUBSETS", "ImageDataset", "open_dataset", "subset_indices"]


def open_dataset(
    path: str | os.PathLike,
    *,
    xflip: bool = False,
    use_labels: bool = True,
    max_size: int | None = None,
    split: str | None = None,
    random_seed: int = 0,
    subset: str = "edm-seeded",
) -> ImageDataset:
    """Open what `path` is: a folder (EDM layout or any image folder), a zip, or CIFAR-10's
    python tarball (`split` "train" (default) or "test"; only for the tarball).

    `max_size` limits the read under the `subset` policy (`sidbench.data.subset`); the
    default "edm-seeded" is EDM's, so subsets and statistics match EDM's."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"dataset path {p} does not exist",
                           hint="give an EDM dataset zip/folder, an image folder or cifar-10-python.tar.gz")
    common = dict(use_labels=use_labels, xflip=xflip, max_size=max_size, random_seed=random_seed,
                  subset=subset)
    from sidbench.data.cifar10 import CIFAR10Tarball, is_cifar_tarball

    if is_cifar_tarball(p):
        return CIFAR10Tarball(p, split=split or "train", **common)
    if split is not None:
        raise DatasetError(f"split={split!r} applies only to CIFAR-10's tarball, not {p}",
                           hint="leave split unset for zips and folders")
    from sidbench.data.edm_archive import EDMImageDataset

    return EDMImageDataset(p, **common)
