"""The embedded suite's feature extractor: a small CNN trained on the digits themselves.

Inception features mean little on 16x16 grayscale digits, so FD / IS / KID / P-R on
the digits suite use this classifier's penultimate features and logits instead. It
is trained deterministically (seeded split, seeded init and batches, one thread)
and shipped with the package; `load_classifier` checks the shipped sha256.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sidbench.errors import AssetError
from sidbench.fileio import atomic_path, atomic_write_json, sha256_file

ASSET_DIR = Path(__file__).parent / "assets" / "digits"
CLASSIFIER_WEIGHTS = ASSET_DIR / "classifier.safetensors"
CLASSIFIER_JSON = ASSET_DIR / "classifier.json"
FEATURE_DIM = 128
NUM_CLASSES = 10


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


@dataclass
class ClassifierReport:
    train_count: int
    heldout_count: int
    train_accuracy: float
    heldout_accuracy: float
    epochs: int
    seed: int


def _shift(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to one pixel (zero fill), so features tolerate small misplacements."""
    pad = torch.nn.functional.pad(images, (1, 1, 1, 1))
    out = torch.empty_like(images)
    offsets = torch.randint(0, 3, [images.shape[0], 2], generator=generator)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = pad[i, :, dy:dy + 16, dx:dx + 16]
    return out


@torch.no_grad()
def accuracy(model: DigitsClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    return float((model(images)["logits"].argmax(1) == labels).float().mean())


def train_classifier(train: tuple[np.ndarray, np.ndarray], held_out: tuple[np.ndarray, np.ndarray], *,
                     epochs: int = 40, batch_size: int = 64, lr: float = 1e-3,
                     seed: int = 0) -> tuple[DigitsClassifier, ClassifierReport]:
    """Train on (uint8 [N,1,16,16] images, labels); report accuracy on the held-out pair too."""
    xt = torch.from_numpy(np.array(train[0]))
    yt = torch.from_numpy(np.asarray(train[1], dtype=np.int64))
    xh = torch.from_numpy(np.array(held_out[0]))
    yh = torch.from_numpy(np.asarray(held_out[1], dtype=np.int64))
    torch.manual_seed(seed)
    model = DigitsClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), batch_size):
            idx = perm[start:start + batch_size]
            loss = torch.nn.functional.cross_entropy(model(_shift(xt[idx], gen))["logits"], yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    report = ClassifierReport(len(xt), len(xh), accuracy(model, xt, yt), accuracy(model, xh, yh),
                              epochs, seed)
    return model, report


def build_shipped_classifier(out_dir: str | Path = ASSET_DIR, seed: int = 0,
                             epochs: int = 40) -> tuple[Path, ClassifierReport]:
    """Re-create the shipped classifier: train on DigitsDataset's "train" split, test on "held_out"."""
    from sidbench.data.digits import DigitsDataset

    train = DigitsDataset(resolution=16, split="train").arrays()
    held = DigitsDataset(resolution=16, split="held_out").arrays()
    model, report = train_classifier(train, held, epochs=epochs, seed=seed)
    return save_classifier(model, Path(out_dir), report), report


def save_classifier(model: DigitsClassifier, out_dir: Path, report: ClassifierReport | None = None) -> Path:
    """Write classifier.safetensors and classifier.json (with its sha256) atomically."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    weights = out_dir / CLASSIFIER_WEIGHTS.name
    with atomic_path(weights, suffix=".safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    meta = {"format": "sidbench.digits-classifier", "format_version": 1, "name": "digits-classifier",
            "version": "1.0.0", "weights_file": weights.name, "weights_sha256": sha256_file(weights),
            "input": "uint8 [N,1,16,16]", "feature_dim": FEATURE_DIM, "num_classes": NUM_CLASSES}
    if report is not None:
        meta["training"] = report.__dict__
    atomic_write_json(out_dir / CLASSIFIER_JSON.name, meta)
    return weights


def load_classifier(path: str | Path | None = None, device: str | torch.device = "cpu") -> DigitsClassifier:
    """The shipped (or given) classifier in eval mode, after checking its sha256 against its json."""
    from safetensors.torch import load_file

    weights = Path(path) if path is not None else CLASSIFIER_WEIGHTS
    meta_path = weights.with_suffix(".json")
    if not weights.is_file() or not meta_path.is_file():
        raise AssetError(f"digits classifier not found at {weights} (+ {meta_path.name})",
                         hint="reinstall sidbench, or pass the folder written by save_classifier")
    meta = json.loads(meta_path.read_text())
    digest = sha256_file(weights)
    if digest != meta.get("weights_sha256"):
        raise AssetError(f"{weights}: sha256 {digest[:16]}... does not match {meta_path.name}",
                         hint="the file is damaged or was replaced; reinstall sidbench")
    model = DigitsClassifier(meta.get("feature_dim", FEATURE_DIM), meta.get("num_classes", NUM_CLASSES))
    model.load_state_dict(load_file(str(weights)), strict=True)
    return model.to(device).eval().requires_grad_(False)


def classifier_sha256(path: str | Path | None = None) -> str:
    """sha256 of the classifier weights (recorded in result records as the extractor digest)."""
    return sha256_file(Path(path) if path is not None else CLASSIFIER_WEIGHTS)
