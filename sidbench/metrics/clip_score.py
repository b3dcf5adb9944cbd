"""CLIP score: mean cosine similarity between paired image and text embeddings.

The COCO protocol (GigaGAN evaluation, as used by SiD-LSG) reports the plain mean cosine as a
fraction (e.g. 0.304), with no clamp at 0. torchmetrics' CLIPScore instead reports
100 * max(cos, 0); `scale=100, clamp=True` reproduces that, and the result records both so
numbers from the two conventions are never mixed silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sidbench.errors import ConfigError


@dataclass(frozen=True)
class ClipScore:
    value: float  # scale * mean(cos) (clamped per pair first when clamp)
    scale: float
    clamp: bool
    num_pairs: int

    def as_dict(self) -> dict:
        return {"value": self.value, "scale": self.scale, "clamp": self.clamp, "num_pairs": self.num_pairs}


def clip_score(image_embeddings: Any, text_embeddings: Any, scale: float = 1.0,
               clamp: bool = False) -> ClipScore:
    """Mean over pairs i of cos(image_i, text_i), in float64."""
    def as64(x) -> np.ndarray:  # torch tensors without importing torch here
        return x.detach().cpu().double().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=np.float64)

    img, txt = as64(image_embeddings), as64(text_embeddings)
    if img.ndim != 2 or img.shape != txt.shape or img.shape[0] == 0:
        raise ConfigError(f"CLIP score needs paired [N, D] embeddings, got {img.shape} and {txt.shape}")
    img_norm = np.linalg.norm(img, axis=1)
    txt_norm = np.linalg.norm(txt, axis=1)
    if (img_norm == 0).any() or (txt_norm == 0).any():
        raise ConfigError("an embedding has zero norm; its cosine similarity is undefined")
    cos = (img * txt).sum(axis=1) / (img_norm * txt_norm)
    if clamp:
        cos = np.maximum(cos, 0.0)
    return ClipScore(value=float(scale * cos.mean()), scale=float(scale), clamp=clamp,
                     num_pairs=int(img.shape[0]))
