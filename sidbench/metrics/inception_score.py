"""Inception Score from bias-free logits, under the three conventions papers use.

IS = exp(E_x KL(p(y|x) || p(y))) per split, in float64. The conventions differ only in how the
images are split:
- "sid"      : 10 splits in index order (StyleGAN2-ADA/SiD code), report mean and std.
- "adm"      : consecutive splits of 5,000 images in index order (ADM evaluator; the last split
               may be shorter), report the mean only.
- "fidelity" : torch-fidelity 0.4.0: rows permuted by `np.random.RandomState(2020).permutation(N)`,
               then 10 splits [i*N//10, (i+1)*N//10); mean and std (np.std, ddof=0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sidbench.errors import ConfigError

MODES = ("sid", "adm", "fidelity")


@dataclass(frozen=True)
class InceptionScore:
    mean: float
    std: float | None  # None where the convention reports the mean only (ADM)
    scores: tuple[float, ...] = field(repr=False)
    mode: str = "sid"

    def as_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "scores": list(self.scores), "mode": self.mode}


def _split_score(log_p: np.ndarray) -> float:
    p = np.exp(log_p)
    log_q = np.log(p.mean(axis=0))
    kl = (p * (log_p - log_q)).sum(axis=1)
    return float(np.exp(kl.mean()))


def inception_score(logits: Any, splits: int = 10, mode: str = "sid", split_size: int = 5000,
                    shuffle_seed: int = 2020) -> InceptionScore:
    """IS of logits [N, C] (the 1008 bias-free Inception logits, or any classifier's logits)."""
    if mode not in MODES:
        raise ConfigError(f"unknown Inception Score mode '{mode}'", hint=f"choose one of {', '.join(MODES)}")
    x = logits.detach().cpu().double().numpy() if hasattr(logits, "detach") else np.asarray(logits)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ConfigError(f"logits must be a non-empty [N, C] array, got shape {x.shape}")
    n = x.shape[0]
    if mode == "fidelity":
        x = x[np.random.RandomState(shuffle_seed).permutation(n)]
    # log-softmax in float64 (max-shifted)
    x = x - x.max(axis=1, keepdims=True)
    log_p = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    if mode == "adm":
        bounds = [(s, min(s + split_size, n)) for s in range(0, n, split_size)]
    else:
        if splits < 1 or splits > n:
            raise ConfigError(f"cannot make {splits} splits of {n} images")
        bounds = [(i * n // splits, (i + 1) * n // splits) for i in range(splits)]
    scores = tuple(_split_score(log_p[a:b]) for a, b in bounds)
    std = None if mode == "adm" else float(np.std(scores))
    return InceptionScore(mean=float(np.mean(scores)), std=std, scores=scores, mode=mode)
