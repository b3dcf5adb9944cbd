"""The reference side of an evaluation: statistics from an .npz, or reference images to extract.

Precomputed statistics are loaded and checked (dimension, extractor, feature layer, covariance
convention) before any image is read, so a wrong file fails in a second, not after an hour of
extraction. Reference images come from `ref_images`, else from `ref` itself: a dataset, a
folder, a tensor, or the `arr_0` images of an ADM VIRTUAL npz.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from sidbench.errors import ConfigError
from sidbench.metrics.extractors import FeatureExtractor, extractor_names
from sidbench.metrics.image_source import ImageSource, TensorImageSource, open_images
from sidbench.metrics.protocols import Protocol
from sidbench.metrics.reference import ReferenceStats

ARR_0 = "adm-virtual-arr_0"  # reference images are the arr_0 batch of an npz
IMAGES = "dataset"  # reference images come from a dataset, a folder or a tensor


def is_npz(ref: Any) -> bool:
    return isinstance(ref, (str, os.PathLike)) and str(ref).endswith(".npz")


def load_statistics(ref: str | os.PathLike, metric: Any, p: Protocol, ext: FeatureExtractor,
                    options: Mapping[str, Any], check_psd: bool = True) -> ReferenceStats:
    """The npz statistics `metric` compares against, refused early if they do not fit this run.

    `check_psd=False`: the caller runs `reference.check_reference_psd` itself (evaluate does, in
    the background during the first batch).
    """
    from sidbench.metrics.reference import load_reference

    stats = load_reference(ref, expected_dim=ext.feature_dims.get(p.feature_key) or None, check_psd=check_psd)
    check_meta(stats.meta, ext, p, str(ref))
    metric.check_reference(stats, options)
    return stats


def check_meta(meta: Mapping[str, Any], ext: FeatureExtractor, p: Protocol, path: str) -> None:
    """Refuse statistics that say they came from another network or feature layer."""
    info = meta.get("extractor")
    theirs = meta.get("extractor_sha256") or (info.get("weights_sha256") if isinstance(info, dict) else None)
    name = info.get("name") if isinstance(info, dict) else info
    if name and name != ext.name and ext.name in extractor_names():
        raise ConfigError(f"{path} was computed with extractor {name}, this run uses {ext.name}",
                          hint="use reference statistics of the protocol's extractor")
    if theirs and theirs != ext.weights_sha256:
        raise ConfigError(f"{path} was computed with extractor weights sha256 {str(theirs)[:12]}..., "
                          f"this run uses {ext.weights_sha256[:12]}...",
                          hint="recompute the reference with `sidbench refstats` and the same weights file")
    key = meta.get("feature_key")
    if key and key != p.feature_key:
        raise ConfigError(f"{path} holds '{key}' features, protocol {p.name} uses '{p.feature_key}'")


def image_source(ref: Any, ref_images: Any, needed_by: str) -> tuple[ImageSource, str]:
    """(reference images, where they come from: ARR_0 or IMAGES)."""
    obj = ref_images if ref_images is not None else ref
    if obj is None:
        raise ConfigError(f"{needed_by}: no reference given",
                          hint="pass --ref (statistics .npz or images) and, for KID / P-R with an npz "
                               "without arr_0 images, --ref-images")
    if is_npz(obj):
        import numpy as np
        import torch

        from sidbench.metrics.reference import reference_images

        arr = reference_images(obj)
        return TensorImageSource(torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))), ARR_0
    if isinstance(obj, (str, os.PathLike)) and os.path.isfile(obj):  # a dataset file: zip, tarball
        from sidbench.data import open_dataset
        from sidbench.metrics.image_source import DatasetImageSource

        return DatasetImageSource(open_dataset(obj, use_labels=False)), IMAGES
    return open_images(obj), IMAGES
