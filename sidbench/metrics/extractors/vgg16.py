"""torchvision VGG-16 (IMAGENET1K_V1), layer fc2 after ReLU: torch-fidelity's P/R feature space.

Uses torch-fidelity's `FeatureExtractorVGG16` (TF1-style bilinear resize to 224,
ImageNet normalisation, classifier cut after fc2) so features equal its own;
the weights file is checked before it reaches torch-fidelity's pickle load.
"""

from __future__ import annotations

import os

import torch

from sidbench.metrics.extractors.base import FeatureExtractor
from sidbench.weights import verify_weights


class VGG16(FeatureExtractor):
    """Feature "fc2_relu" (4096)."""

    name = "vgg16-fc2-relu"
    version = "1"
    input_size = 224
    feature_dims = {"fc2_relu": 4096}

    def __init__(self, weights_path: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
        super().__init__(device)
        from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

        path, self.weights_sha256, self.weights_official = verify_weights("vgg16", weights_path)
        self.weights_path = path
        self.model = FeatureExtractorVGG16(
            "vgg16", ["fc2_relu"], feature_extractor_weights_path=str(path)
        ).to(self.device)

    def _extract(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        (fc2_relu,) = self.model(images)
        return {"fc2_relu": fc2_relu}
