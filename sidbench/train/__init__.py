"""Training pieces: EDM's denoising loss, EMA, and the small teacher trainer of the embedded suites."""

from sidbench.train.edm_loss import edm_loss, edm_loss_weight, sample_sigma
from sidbench.train.ema import EMA, ema_beta

__all__ = ["EMA", "edm_loss", "edm_loss_weight", "ema_beta", "sample_sigma"]
