"""clean-fid's "clean" mode: PIL bicubic resize to 299, then NVIDIA's TorchScript Inception.

This is a different metric from the EDM-family FID (clean-fid's own table: -0.4%
to +28% vs legacy); only the COCO protocol uses it. clean-fid itself looks for
/tmp/inception-2015-12-05.pt and downloads otherwise, so we load the TorchScript
file from a path the user gives and reproduce its preprocessing here: each
channel as a float32 PIL image (mode "F"), bicubic to 299x299, clipped to
[0, 255], then (x - 128) / 128 into the network's `layers` (no internal resize).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from sidbench.assets import resolve_asset
from sidbench.errors import CheckpointError
from sidbench.fileio import sha256_file
from sidbench.metrics.extractors.base import FeatureExtractor

SIZE = 299


def clean_resize(image_hwc: np.ndarray, size: int = SIZE) -> np.ndarray:
    """clean-fid's clean resize of one uint8 HxWx3 image -> float32 size x size x 3."""
    channels = []
    for c in range(image_hwc.shape[2]):
        img = Image.fromarray(image_hwc[:, :, c].astype(np.float32), mode="F")
        img = img.resize((size, size), resample=Image.BICUBIC)
        channels.append(np.asarray(img).clip(0, 255).reshape(size, size, 1))
    return np.concatenate(channels, axis=2).astype(np.float32)


class CleanFIDInception(FeatureExtractor):
    """Feature "pool" (2048) of NVIDIA's TorchScript Inception in clean-fid's clean mode."""

    name = "clean-fid-inception"
    version = "1"
    input_size = SIZE
    feature_dims = {"pool": 2048}

    def __init__(self, weights_path: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
        super().__init__(device)
        path = resolve_asset("inception-torchscript", weights_path, verify=False)
        self.weights_path = path
        self.weights_sha256 = sha256_file(path)
        self.weights_official = False  # NVIDIA publishes no digest for this file
        try:
            base = torch.jit.load(str(path), map_location=self.device)
        except Exception as exc:
            raise CheckpointError(f"{path} is not a TorchScript archive ({type(exc).__name__})",
                                  hint="pass NVIDIA's inception-2015-12-05.pt") from None
        if not hasattr(base, "layers"):
            raise CheckpointError(f"{path} has no `layers` submodule: not NVIDIA's Inception TorchScript",
                                  hint="pass NVIDIA's inception-2015-12-05.pt")
        self.layers = base.layers.eval()

    def _extract(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        hwc = images.permute(0, 2, 3, 1).cpu().numpy()
        resized = np.stack([clean_resize(im) for im in hwc])
        x = torch.from_numpy(resized).permute(0, 3, 1, 2).to(self.device)
        x = (x - 128) / 128
        return {"pool": self.layers.forward(x).reshape(len(images), 2048)}
