"""The embedded digits suite's classifier: its network, its file format, and the extractor around it.

Inception features mean little on 16x16 grayscale digits, so the digits protocols
use this small shipped CNN's 128-d penultimate features ("features") and its
10 class logits ("logits"). The network and its files live here, in the metrics
layer, because metrics must not import suites; how the shipped weights were
trained is `sidbench.suites.digits_classifier`. The shipped files are package
data under `sidbench/suites/assets/digits/`, found through `sidbench.packaged`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sidbench.errors import AssetError, ConfigError
from sidbench.fileio import atomic_path, atomic_write_json, sha256_file
from sidbench.metrics.extractors.base import FeatureExtractor
from sidbench.packaged import packaged_path

ASSET_DIR = packaged_path("digits", must_exist=False)
CLASSIFIER_WEIGHTS = ASSET_DIR / "classifier.safetensors"
CLASSIFIER_JSON = ASSET_DIR / "classifier.json"
FEATURE_DIM = 128
NUM_CLASSES = 10
FORMAT = "sidbench.digits-classifier"


class DigitsClassifier(nn.Module):
    """uint8 [N, 1, 16, 16] -> {"features": [N, 128], "logits": [N, 10]}.

    Two conv stages (16 -> 8 -> 4), then a 128-d ReLU layer (the features) and the class logits.
    """

    def __init__(self, feature_dim: int = FEATURE_DIM, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, feature_dim), nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.dtype != torch.uint8:
            raise TypeError(f"DigitsClassifier takes uint8 images, got {images.dtype}")
        if tuple(images.shape[1:]) != (1, 16, 16):
            raise ValueError(f"DigitsClassifier takes [N, 1, 16, 16] images, got {list(images.shape)}")
        x = images.to(torch.float32) / 127.5 - 1.0
        features = self.body(x)
        return {"features": features, "logits": self.head(self.dropout(features))}


def save_classifier(model: DigitsClassifier, out_dir: str | os.PathLike,
                    training: dict[str, Any] | None = None) -> Path:
    """Write classifier.safetensors and classifier.json (with its sha256) atomically."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    weights = out / CLASSIFIER_WEIGHTS.name
    with atomic_path(weights, suffix=".safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    meta: dict[str, Any] = {
        "format": FORMAT, "format_version": 1, "name": "digits-classifier", "version": "1.0.0",
        "weights_file": weights.name, "weights_sha256": sha256_file(weights), "input": "uint8 [N,1,16,16]",
        "feature_dim": model.head.in_features, "num_classes": model.head.out_features,
    }
    if training is not None:
        meta["training"] = dict(training)
    atomic_write_json(out / CLASSIFIER_JSON.name, meta)
    return weights


def load_classifier(path: str | os.PathLike | None = None,
                    device: str | torch.device = "cpu") -> DigitsClassifier:
    """The shipped (or given) classifier in eval mode, after checking its sha256 against its json."""
    from safetensors.torch import load_file

    weights = Path(path) if path is not None else CLASSIFIER_WEIGHTS
    meta_path = weights.with_suffix(".json")
    if not weights.is_file() or not meta_path.is_file():
        raise AssetError(f"digits classifier not found at {weights} (+ {meta_path.name})",
                         hint="reinstall sidbench, or pass the file written by save_classifier")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AssetError(f"{meta_path} is not valid JSON ({exc})",
                         hint="the file is damaged; reinstall sidbench") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AssetError(f"{meta_path} is not a digits-classifier file (format != {FORMAT!r})",
                         hint="pass the classifier.safetensors written by save_classifier")
    digest = sha256_file(weights)
    if digest != meta.get("weights_sha256"):
        raise AssetError(f"{weights}: sha256 {digest[:16]}... does not match {meta_path.name}",
                         hint="the file is damaged or was replaced; reinstall sidbench")
    model = DigitsClassifier(int(meta.get("feature_dim", FEATURE_DIM)),
                             int(meta.get("num_classes", NUM_CLASSES)))
    model.load_state_dict(load_file(str(weights)), strict=True)
    return model.to(device).eval().requires_grad_(False)


def classifier_sha256(path: str | os.PathLike | None = None) -> str:
    """sha256 of the classifier weights (recorded in result records as the extractor digest)."""
    return sha256_file(Path(path) if path is not None else CLASSIFIER_WEIGHTS)


class DigitsClassifierExtractor(FeatureExtractor):
    name = "digits-classifier"
    version = "1"
    input_size = 16
    input_channels = 1
    feature_dims = {"features": FEATURE_DIM, "logits": NUM_CLASSES}  # of the shipped file

    def __init__(self, weights_path: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
        super().__init__(device)
        self.model = load_classifier(weights_path, device=self.device)  # checks the file's sha256
        self.weights_sha256 = classifier_sha256(weights_path)
        self.weights_official = weights_path is None
        self.feature_dims = {"features": self.model.head.in_features, "logits": self.model.head.out_features}

    def _extract(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.shape[-2:] != (16, 16):
            raise ConfigError(f"the digits classifier takes 16x16 images, got {tuple(images.shape[-2:])}",
                              hint="evaluate digits-suite images with the digits protocols only")
        out = self.model(images)
        return {"features": out["features"], "logits": out["logits"]}
