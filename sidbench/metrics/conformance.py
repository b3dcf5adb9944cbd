"""Whether a run followed its protocol: the deviations that make a number incomparable with published ones.

A record's `full_protocol` is true only when this list is empty. Deviations are not errors (a
quick 1,000-image FID is useful), but they are always written down: image count, overridden
options, another extractor, other seeds, another caption list, another reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sidbench.data.captions import captions_sha256 as file_sha256
from sidbench.metrics.protocols import Protocol
from sidbench.metrics.reference_inputs import ARR_0


def captions_sha256(captions: Sequence[str] | None) -> str | None:
    """sha256 of the captions file (`sidbench.data.captions.captions_sha256`); None without captions."""
    return None if captions is None else file_sha256(captions)


def _seeds_match(seeds: Sequence[int], seed_sets: Sequence[Sequence[int]]) -> bool:
    s = np.asarray(seeds, dtype=np.int64)
    return any(len(s) == hi - lo + 1 and np.array_equal(s, np.arange(lo, hi + 1)) for lo, hi in seed_sets)


def deviations(p: Protocol, *, num_images: int, overrides: Mapping[str, Any], extractor: str,
               seeds: Sequence[int] | None = None, captions: str | None = None,
               reference: str | None = None, reference_images: int | None = None) -> list[str]:
    """One line per way this run differs from protocol `p` (empty: the run is the protocol).

    seeds: the generator seeds when images were made on the fly; captions: their sha256;
    reference: ARR_0 / "dataset" / "stats" for metrics with a reference, with its image count.
    """
    out = []
    if num_images != p.num_images:
        out.append(f"{num_images} images, the protocol uses {p.num_images}")
    if overrides:
        out.append("options overridden: " + ", ".join(f"{k}={v!r}" for k, v in sorted(overrides.items())))
    if extractor != p.extractor:
        out.append(f"extractor {extractor}, the protocol uses {p.extractor}")
    seed_sets = p.option("seed_sets")
    if seeds is not None and seed_sets and not _seeds_match(seeds, seed_sets):
        out.append("seeds are not one of the protocol's seed sets "
                   + ", ".join(f"{lo}-{hi}" for lo, hi in seed_sets))
    want = p.option("captions_sha256")
    if want and captions is None:
        out.append("captions not given: cannot check that the images come from the protocol's caption list")
    elif want and captions != want:
        out.append(f"captions sha256 {captions[:12]}..., the protocol's list is {want[:12]}...")
    if reference is not None:
        kind = p.option("reference")
        if kind == ARR_0 and reference != ARR_0:
            out.append("reference images are not ADM's VIRTUAL batch (arr_0 of the reference npz)")
        elif kind == "dataset" and reference == ARR_0:
            out.append("reference images are an npz's arr_0 batch, the protocol uses the dataset")
        count = p.option("reference_images")
        if count is not None and reference_images != count:
            have = "an unknown number of" if reference_images is None else str(reference_images)
            out.append(f"{have} reference images, the protocol uses {count}")
    return out
