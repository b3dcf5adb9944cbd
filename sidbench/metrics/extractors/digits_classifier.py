"""The embedded digits suite's classifier behind the common extractor interface.

Inception features mean little on 16x16 grayscale digits, so the digits protocols
use this small shipped CNN's 128-d penultimate features ("features") and its
10 class logits ("logits"); the network lives in `sidbench.suites.digits_classifier`.
"""

from __future__ import annotations

import os

import torch

from sidbench.metrics.extractors.base import FeatureExtractor


class DigitsClassifierExtractor(FeatureExtractor):
    name = "digits-classifier"
    version = "1"
    input_size = 16
    input_channels = 1

    def __init__(self, weights_path: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
        super().__init__(device)
        from sidbench.suites import digits_classifier as dc

        self.model = dc.load_classifier(weights_path, device=self.device)  # checks the shipped sha256
        self.weights_sha256 = dc.classifier_sha256(weights_path)
        self.weights_official = weights_path is None
        self.feature_dims = {"features": self.model.head.in_features, "logits": self.model.head.out_features}

    def _extract(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.shape[-2:] != (16, 16):
            from sidbench.errors import ConfigError

            raise ConfigError(f"the digits classifier takes 16x16 images, got {tuple(images.shape[-2:])}",
                              hint="evaluate digits-suite images with the digits protocols only")
        out = self.model(images)
        return {"features": out["features"], "logits": out["logits"]}
