"""How the digits suite's shipped classifier was trained (deterministic: seeded split, init, batches).

The network, its file format and loading live in the metrics layer
(`sidbench.metrics.extractors.digits_classifier`), which uses it as the feature
extractor of the digits protocols; this module re-exports them for convenience.
`build_shipped_classifier` rebuilds `assets/digits/classifier.*` from scratch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sidbench.metrics.extractors.digits_classifier import (
    ASSET_DIR,
    CLASSIFIER_JSON,
    CLASSIFIER_WEIGHTS,
    FEATURE_DIM,
    NUM_CLASSES,
    DigitsClassifier,
    classifier_sha256,
    load_classifier,
)
from sidbench.metrics.extractors.digits_classifier import save_classifier as _save_classifier

__all__ = ["ASSET_DIR", "CLASSIFIER_JSON", "CLASSIFIER_WEIGHTS", "FEATURE_DIM", "NUM_CLASSES",
           "ClassifierReport", "DigitsClassifier", "accuracy", "build_shipped_classifier",
           "classifier_sha256", "load_classifier", "save_classifier", "train_classifier"]


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


def save_classifier(model: DigitsClassifier, out_dir: str | Path,
                    report: ClassifierReport | None = None) -> Path:
    """Write classifier.safetensors and classifier.json (with its sha256 and training report) atomically."""
    return _save_classifier(model, out_dir, asdict(report) if report is not None else None)
