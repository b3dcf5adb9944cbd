"""LPIPS-VGG (Zhang et al. 2018, `lpips` v0.1, net='vgg'): DMD's regression distance, from local weights only.

The network is torchvision's VGG-16 `features` (IMAGENET1K_V1, the `vgg16` asset of `sidbench env`)
read at relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3, plus LPIPS's five linear 1x1 layers
(`lin0..lin4`, the `lpips` package's `weights/v0.1/vgg.pth`). For images x, y in [-1, 1]:
scale each by LPIPS's shift/scale, unit-normalise each layer's features over channels
(f / (||f|| + 1e-10)), and sum over layers the spatial mean of lin_k((f_x - f_y)^2). The module
keeps the `lpips` package's parameter names, so its state dicts load unchanged; nothing is
downloaded and nothing is unpickled (safetensors or `torch.load(weights_only=True)`).
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sidbench.errors import AssetError, CheckpointError

# torchvision VGG-16 `features` config "D" and the indices LPIPS reads (after each block's last ReLU).
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class _Lin(nn.Module):
    """LPIPS's NetLinLayer: dropout (a no-op in eval mode) then a bias-free 1x1 conv to one channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG16:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            channels = int(item)
    return nn.Sequential(*layers)  # indices 0..29, as torchvision's features[:30]


class LPIPSVGG(nn.Module):
    """Per-sample LPIPS distance [B] of two image batches in [-1, 1] (1 or 3 channels, any size)."""

    def __init__(self, resolution: int | None = 224):
        super().__init__()
        self.resolution = resolution
        self.features = _features()
        for k, c in enumerate(_CHANNELS):
            self.add_module(f"lin{k}", _Lin(c))
        self.register_buffer("shift", torch.tensor(SHIFT).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).reshape(1, 3, 1, 1), persistent=False)
        self.weights_sha256: dict[str, str] = {}

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[1] != 3:
            raise ValueError(f"LPIPS takes 1- or 3-channel images, not {x.shape[1]}")
        if self.resolution is not None and tuple(x.shape[-2:]) != (self.resolution, self.resolution):
            size = (self.resolution, self.resolution)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return (x - self.shift) / self.scale

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                out.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
            if i == _TAPS[-1]:
                break
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx, fy = self._taps(self._prepare(x)), self._taps(self._prepare(y))
        total = 0
        for k, (a, b) in enumerate(zip(fx, fy, strict=True)):
            total = total + getattr(self, f"lin{k}")((a - b) ** 2).mean(dim=(2, 3))
        return total.flatten()


def package_lin_weights() -> Path | None:
    """`weights/v0.1/vgg.pth` of an installed `lpips` package (found without importing it), else None."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "weights" / "v0.1" / "vgg.pth"
        if path.is_file():
            return path
    return None


def _state(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    from sidbench.weights import load_state_dict_safely

    p = Path(path).expanduser()
    if not p.is_file():
        raise AssetError(f"LPIPS {what} {p} not found", hint="give the path of the file")
    return load_state_dict_safely(p)


def load_lpips_vgg(lpips_weights: str | os.PathLike | None = None,
                   vgg16_weights: str | os.PathLike | None = None, resolution: int | None = 224) -> LPIPSVGG:
    """LPIPS-VGG from local files, frozen in eval mode.

    lpips_weights: the five linear layers (`lin{k}.model.1.weight`; the `lpips` package's
    weights/v0.1/vgg.pth, a copy of it, or a safetensors file with the same keys); default: the
    installed `lpips` package's file. A file holding the whole LPIPS state dict (its VGG too, as
    `net.slice*` or `features.*` keys) needs no vgg16_weights. vgg16_weights: torchvision's
    vgg16-397923af.pth (the `vgg16` asset; default: found in $SIDBENCH_CACHE as `sidbench env` says).
    """
    from sidbench.fileio import sha256_file
    from sidbench.weights import load_verified_weights

    lin_path = Path(lpips_weights).expanduser() if lpips_weights is not None else package_lin_weights()
    if lin_path is None:
        raise AssetError("DMD's regression loss needs LPIPS-VGG weights and none were found",
                         hint="pip install lpips (it ships weights/v0.1/vgg.pth) or set "
                              "method_settings.lpips_weights to that file, and put torchvision's "
                              "vgg16-397923af.pth where `sidbench env` looks; or set "
                              "method_settings.regression_distance: l2")
    lin_state = _state(lin_path, "weights")
    net = LPIPSVGG(resolution)
    features = {k: v for k, v in lin_state.items() if k.startswith(("features.", "net.slice"))}
    lin = {k: v for k, v in lin_state.items() if re.match(r"lin\d\.", k)}  # lpips also aliases them as lins.N
    net.weights_sha256["lpips"] = sha256_file(lin_path)
    if features:
        # lpips names VGG layer i of block s `net.slice{s}.{i}` (i is torchvision's features index)
        vgg = {("features." + k.split(".", 2)[2] if k.startswith("net.slice") else k): v
               for k, v in features.items()}
    else:
        path, digest, _official, state = load_verified_weights("vgg16", vgg16_weights)
        if state is None:
            raise CheckpointError(f"{path} does not load as plain tensors", hint="re-save it as a state dict")
        vgg = {k: v for k, v in state.items() if k.startswith("features.")}
        net.weights_sha256["vgg16"] = digest
    vgg = {k: v for k, v in vgg.items() if int(k.split(".")[1]) <= _TAPS[-1]}
    missing = net.load_state_dict({**vgg, **lin}, strict=False)
    if missing.missing_keys or missing.unexpected_keys:
        keys = (missing.missing_keys or missing.unexpected_keys)[:3]
        kind = "missing" if missing.missing_keys else "unexpected"
        raise CheckpointError(f"LPIPS weights do not fit LPIPS-VGG ({kind} keys {', '.join(keys)})",
                              hint="give the lpips package's weights/v0.1/vgg.pth and torchvision's VGG-16")
    return net.eval().requires_grad_(False)


__all__ = ["LPIPSVGG", "load_lpips_vgg", "package_lin_weights"]
