"""Which images a limited read takes: the one, named subset policy of every reader.

- `"first"`: the first `count` images in order (file-name order for files). A set with
  fewer than `count` images is an error: asking for N images and getting fewer would
  make a number that is not the one asked for. Default for generated images, whose
  image i comes from seed i, so the first N are seeds 0..N-1.
- `"edm-seeded"`: EDM's `max_size` (`training/dataset.py`): when the set holds more than
  `count`, `np.random.RandomState(seed % 2**31).shuffle(arange(N))`, keep `count`, sort
  (the subset keeps file order); otherwise every image. Default for datasets and reference
  images, because it is how EDM's `fid.py ref` picks a reference subset, so statistics
  computed here match statistics computed there.
"""

from __future__ import annotations

import numpy as np

from sidbench.errors import ConfigError, DatasetError
from sidbench.registry import suggest

SUBSETS = ("first", "edm-seeded")


def check_subset(subset: str) -> str:
    """`subset` if it names a policy, else a ConfigError with a suggestion."""
    if subset not in SUBSETS:
        raise ConfigError(f"unknown subset policy {subset!r}.{suggest(str(subset), list(SUBSETS))}",
                          hint=f"use one of {', '.join(SUBSETS)}")
    return subset


def subset_indices(num_images: int, count: int | None, subset: str = "edm-seeded", *, seed: int = 0,
                   what: str = "the image set") -> np.ndarray:
    """Sorted int64 indices (into 0..num_images-1) that a read of `count` images takes.

    `count=None` takes every image. `seed` is used by "edm-seeded" only; `what` names the
    set in errors.
    """
    check_subset(subset)
    idx = np.arange(num_images, dtype=np.int64)
    if count is None:
        return idx
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
        raise ConfigError(f"the number of images to read must be a whole number of at least 1, got {count!r}",
                          hint="leave it unset to use every image")
    if subset == "first":
        if count > num_images:
            raise DatasetError(f"{what} holds {num_images:,} images, {count:,} were asked for",
                               hint="provide more images or ask for fewer")
        return idx[:count]
    if num_images > count:
        np.random.RandomState(int(seed) % (1 << 31)).shuffle(idx)
        idx = np.sort(idx[:count])
    return idx


def describe_subset(subset: str, count: int, available: int, seed: int = 0) -> dict:
    """What a result records about a subset: the policy, the count read, how many there were."""
    d: dict = {"policy": subset, "count": int(count), "available": int(available)}
    if subset == "edm-seeded":
        d["seed"] = int(seed)
    return d
