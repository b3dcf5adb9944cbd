"""ADD's discriminator: a frozen feature network and small trainable heads, conditioned by projection.

ADD (Sauer et al., 2023) reads features of a frozen DINOv2 ViT-S at several layers and puts a small
trainable head on each; the heads are conditioned on text/image embeddings *[recalled]*. Here the class
label conditions the heads by projection (Miyato & Koyama, 2018): each head maps a feature map to
per-position features phi and a logit w . phi + <embed(label), phi> / sqrt(channels). The feature
network is pluggable:

- "teacher" (default, offline): the frozen teacher's lowest-resolution encoder map
  (`encoder_features`) at a fixed noise level `feature_sigma` on the clean image, with no class label
  (the label enters only through the projection). The teacher is *referenced*, not copied: it is not a
  registered submodule, so checkpoints hold only the heads, and it stays frozen in eval mode.
- "dinov2": a DINOv2 ViT-S (Hugging Face `Dinov2Model` layout) loaded from a local folder given as
  `feature_weights` (config.json + model.safetensors, never a pickle); images in [-1, 1] are resized to
  the model's image size, replicated to 3 channels and normalised with ImageNet's mean and std. Its
  patch tokens at the hidden states `feature_layers` feed one head each. Without local weights it is
  a one-line error; nothing is downloaded.

`build_discriminator` is the `NetworkSpec.build` hook; the trainer runs it under a seed derived from
the run seed, so the heads' initialisation is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sidbench.errors import AssetError, ConfigError
from sidbench.methods.edm import unwrap, zero_augment_labels

FEATURE_NETWORKS = ("teacher", "dinov2")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ProjectionHead(nn.Module):
    """[b, C, h, w] features -> [b, h*w] logits: two 1x1 convolutions with LeakyReLU(0.2) give phi, then
    logit = conv1x1(phi) + <embed(label), phi> / sqrt(channels) (the projection; none when unconditional)."""

    def __init__(self, in_channels: int, channels: int = 64, label_dim: int = 0):
        super().__init__()
        self.channels = channels
        self.body = nn.Sequential(nn.Conv2d(in_channels, channels, 1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(channels, channels, 1), nn.LeakyReLU(0.2))
        self.out = nn.Conv2d(channels, 1, 1)
        self.embed = nn.Linear(label_dim, channels, bias=False) if label_dim else None

    def forward(self, feats: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        phi = self.body(feats)
        logits = self.out(phi)
        if self.embed is not None and labels is not None:
            e = self.embed(labels.to(phi.dtype))[:, :, None, None]
            logits = logits + (e * phi).sum(dim=1, keepdim=True) / math.sqrt(self.channels)
        return logits.flatten(start_dim=1)


class TeacherEncoder:
    """The frozen teacher's encoder map at `sigma` as the feature network (a reference, not a submodule)."""

    def __init__(self, teacher: nn.Module, sigma: float = 0.5):
        if teacher is None:
            raise ConfigError("ADD's feature network 'teacher' needs the teacher, and the run has none",
                              hint="set training.teacher, or feature_network: dinov2 with feature_weights")
        if not hasattr(unwrap(teacher), "encoder_features"):
            raise ConfigError(f"the teacher ({type(unwrap(teacher)).__name__}) has no encoder to read "
                              "features from", hint="use feature_network: dinov2 with feature_weights")
        self.teacher = teacher
        self.sigma = float(sigma)

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        sigma = torch.full((x.shape[0], 1, 1, 1), self.sigma, device=x.device, dtype=x.dtype)
        net = unwrap(self.teacher)
        return [net.encoder_features(x, sigma, None, augment_labels=zero_augment_labels(net, x))]


class Dinov2Features(nn.Module):
    """A frozen DINOv2 (Hugging Face layout) read at `layers` (indices into its hidden states)."""

    def __init__(self, folder: str | Path, layers: Sequence[int]):
        super().__init__()
        path = Path(folder).expanduser()
        if not (path / "config.json").is_file():
            raise AssetError(f"DINOv2 weights not found: {path} has no config.json",
                             hint="give feature_weights as a local folder holding a DINOv2 ViT-S in Hugging "
                                  "Face layout (config.json + model.safetensors); nothing is downloaded")
        try:
            from transformers import Dinov2Model
        except ImportError:
            raise ConfigError("feature_network dinov2 needs the transformers package",
                              hint="pip install 'sidbench[t2i]' (or transformers), or use feature_network: "
                                   "teacher") from None
        try:
            model = Dinov2Model.from_pretrained(str(path), local_files_only=True, use_safetensors=True,
                                                attn_implementation="eager")
        except (OSError, ValueError) as exc:
            raise AssetError(f"cannot load DINOv2 from {path}: {' '.join(str(exc).split())[:200]}",
                             hint="the folder needs config.json and model.safetensors (no pickles)") from None
        depth = int(model.config.num_hidden_layers)
        layers = tuple(int(i) for i in layers)
        if not layers or any(not 1 <= i <= depth for i in layers):
            raise ConfigError(f"feature_layers {list(layers)} must be hidden-state indices from 1 to {depth} "
                              "for this DINOv2",
                              hint=f"e.g. feature_layers: [{depth // 4}, {depth // 2}, {depth}]")
        self.model = model.eval().requires_grad_(False)
        self.layers = layers
        self.size = int(model.config.image_size)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> Dinov2Features:
        return super().train(False)  # frozen: always in eval mode

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ConfigError(f"DINOv2 reads 1- or 3-channel images, not {x.shape[1]} channels",
                              hint="use feature_network: teacher for this suite")
        x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = ((x + 1) / 2 - self.mean) / self.std
        hidden = self.model(pixel_values=x, output_hidden_states=True).hidden_states
        # the patch tokens of each chosen hidden state, as [b, D, N, 1] maps
        return [hidden[i][:, 1:].transpose(1, 2).unsqueeze(-1) for i in self.layers]


class Discriminator(nn.Module):
    """Frozen features, one trainable `ProjectionHead` per feature map; forward -> [b, K] logits."""

    def __init__(self, features: Any, in_channels: Sequence[int], label_dim: int, channels: int = 64):
        super().__init__()
        if isinstance(features, nn.Module):
            self.features = features
        else:
            self._features = (features,)  # a plain attribute: the teacher is not part of this network
        self.label_dim = label_dim
        self.heads = nn.ModuleList(ProjectionHead(c, channels, label_dim) for c in in_channels)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        extract = self.features if "features" in self._modules else self._features[0]
        return extract(x)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        maps = self.feature_maps(x)
        logits = [head(f.to(torch.float32), labels) for head, f in zip(self.heads, maps, strict=True)]
        return torch.cat(logits, dim=1)


def build_discriminator(base: nn.Module | None, inputs: Any) -> Discriminator:
    """`NetworkSpec.build` of ADD's discriminator: the settings' feature network, frozen, and fresh heads
    sized by one forward pass of a zero image."""
    s = inputs.settings
    if s.feature_network == "teacher":
        features: Any = TeacherEncoder(inputs.teacher, s.feature_sigma)
    elif s.feature_network == "dinov2":
        if s.feature_weights is None:
            raise ConfigError("feature_network dinov2 needs feature_weights: a local folder with DINOv2 "
                              "ViT-S weights", hint="set method_settings.feature_weights=DIR (Hugging Face "
                                                    "layout), or use feature_network: teacher")
        features = Dinov2Features(s.feature_weights, s.feature_layers)
    else:
        raise ConfigError(f"unknown feature_network {s.feature_network!r}",
                          hint=f"choose one of {', '.join(FEATURE_NETWORKS)}")
    device = next(iter(inputs.teacher.parameters())).device if inputs.teacher is not None else "cpu"
    if isinstance(features, nn.Module):
        features = features.to(device)
    with torch.no_grad():
        maps = features(torch.zeros(1, *inputs.img_shape, device=device))
    return Discriminator(features, [int(m.shape[1]) for m in maps], inputs.label_dim, s.head_channels)
