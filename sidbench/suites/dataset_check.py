"""Is this the dataset a suite expects? A wrong file of the right resolution is refused, with a diagnosis.

Lives with the suites (it reads `DatasetIdentity` and the suite registry); dataset readers
know nothing about suites.
"""

from __future__ import annotations

from sidbench.data.base import ImageDataset
from sidbench.errors import DatasetError
from sidbench.suites.base import DatasetIdentity

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
