"""Feature extractors by the names the metric protocols use.

Each one maps uint8 images [N, C, H, W] to named float features and carries
`name, version, weights_sha256, input_size, feature_dims`. Weights always come
from a local file (a path, or `$SIDBENCH_CACHE/<published file name>`); nothing
is downloaded. Modules are imported only when an extractor is built.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

import torch

from sidbench.errors import ConfigError
from sidbench.metrics.extractors.base import FeatureExtractor, tf32_disabled, tf32_enabled
from sidbench.registry import suggest

# protocol extractor name -> (module, class)
_EXTRACTORS: dict[str, tuple[str, str]] = {
    "inception-v3-compat": ("inception", "InceptionV3Compat"),
    "clean-fid-inception": ("cleanfid_inception", "CleanFIDInception"),
    "vgg16-fc2-relu": ("vgg16", "VGG16"),
    "open-clip-vitg14": ("clip", "ClipExtractor"),
    "digits-classifier": ("digits_classifier", "DigitsClassifierExtractor"),
}

__all__ = ["FeatureExtractor", "build_extractor", "extractor_names", "tf32_disabled", "tf32_enabled"]


def extractor_names() -> list[str]:
    return sorted(_EXTRACTORS)


def extractor_class(name: str) -> Callable[..., FeatureExtractor]:
    if name not in _EXTRACTORS:
        raise ConfigError(f"unknown feature extractor '{name}'.{suggest(name, extractor_names())}",
                          hint=f"known extractors: {', '.join(extractor_names())}")
    module, cls = _EXTRACTORS[name]
    return getattr(importlib.import_module(f"sidbench.metrics.extractors.{module}"), cls)


def build_extractor(name: str, weights_path: str | os.PathLike | None = None,
                    device: str | torch.device = "cpu", **options) -> FeatureExtractor:
    """The extractor `name` with weights from `weights_path` (or the asset cache).

    `options` go to the extractor's constructor (e.g. `channels_last=True` for Inception).
    """
    return extractor_class(name)(weights_path=weights_path, device=device, **options)
