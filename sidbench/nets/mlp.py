"""A small MLP denoiser backbone for the toy2d suite.

A 2-D point is treated as a 2-channel 1x1 image, so the MLP plugs into EDM's
preconditioning (`EDMPrecond(model_type="MLPDenoiser")`) and every sampler,
loss and method written for images runs unchanged on the toy problem, where the
exact denoiser is known.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, channels: int, max_period: float = 10_000.0) -> torch.Tensor:
    """[B] scalars -> [B, channels] cos/sin features at geometric frequencies."""
    half = channels // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


class MLPDenoiser(nn.Module):
    """Raw denoiser F(x, c_noise) on flattened pixels, conditioned through an additive embedding.

    Constructor and forward follow EDM's backbone signatures so that the config
    machinery builds it like SongUNet. No catch-all **kwargs: a misspelt setting is refused.
    """

    def __init__(self, img_resolution: int, in_channels: int, out_channels: int, label_dim: int = 0,
                 augment_dim: int = 0, hidden: int = 128, num_layers: int = 3, noise_channels: int = 32,
                 dropout: float = 0.0):
        super().__init__()
        if num_layers < 1:
            raise ValueError("num_layers must be >= 1")
        self.img_resolution = img_resolution
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.label_dim = label_dim
        self.noise_channels = noise_channels
        in_features = in_channels * img_resolution * img_resolution
        out_features = out_channels * img_resolution * img_resolution
        self.map_noise = nn.Linear(noise_channels, hidden)
        self.map_label = nn.Linear(label_dim, hidden, bias=False) if label_dim else None
        self.map_augment = nn.Linear(augment_dim, hidden, bias=False) if augment_dim else None
        self.inp = nn.Linear(in_features, hidden)
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, out_features)

    def _embedding(self, noise_labels, class_labels, augment_labels) -> torch.Tensor:
        emb = self.map_noise(sinusoidal_embedding(noise_labels.reshape(-1), self.noise_channels))
        if self.map_label is not None and class_labels is not None:
            emb = emb + self.map_label(class_labels.to(emb.dtype).reshape(emb.shape[0], -1))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels.to(emb.dtype).reshape(emb.shape[0], -1))
        return torch.nn.functional.silu(emb)

    def _hidden(self, x, noise_labels, class_labels, augment_labels) -> torch.Tensor:
        emb = self._embedding(noise_labels, class_labels, augment_labels)
        h = self.inp(x.reshape(x.shape[0], -1).to(torch.float32)) + emb
        for layer in self.layers:
            h = layer(self.dropout(torch.nn.functional.silu(h))) + emb
        return torch.nn.functional.silu(h)

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None,
                augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self._hidden(x, noise_labels, class_labels, augment_labels)
        return self.out(h).reshape(x.shape[0], self.out_channels, self.img_resolution, self.img_resolution)

    def encoder_features(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None,
                         augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The last hidden activations as a [B, hidden, 1, 1] map (the MLP has no spatial encoder)."""
        return self._hidden(x, noise_labels, class_labels, augment_labels)[:, :, None, None]
