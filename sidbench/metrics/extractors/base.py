"""The one interface every feature extractor has, plus the safety checks they share.

An extractor maps uint8 images [N, C, H, W] to named float feature tensors. Its
name, version and the sha256 of its weights go into every result record, so two
numbers are only compared when they came from the same network.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from sidbench.devices import parse_device
from sidbench.errors import ConfigError


class FeatureExtractor:
    """Base class: subclasses set the attributes and implement `_extract`.

    `__call__` checks the input, moves it to the extractor's device and runs
    `_extract` without gradients and with TF32 disabled, so results do not depend
    on a global flag someone else set.
    """

    name: str = ""
    version: str = "1"
    weights_sha256: str = ""
    weights_official: bool = False
    input_size: int = 0
    input_channels: int = 3
    feature_dims: dict[str, int] = {}

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = parse_device(device)

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        images = check_uint8_images(images, self.input_channels)
        with torch.inference_mode(), tf32_disabled():
            out = self._extract(images.to(self.device))
        return {k: v.float() for k, v in out.items()}

    def _extract(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def describe(self) -> dict:
        """What a result record stores about the extractor."""
        return {
            "name": self.name,
            "version": self.version,
            "weights_sha256": self.weights_sha256,
            "weights_official": self.weights_official,
            "input_size": self.input_size,
            "feature_dims": dict(self.feature_dims),
            "tf32": False,
        }


def check_uint8_images(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Refuse floats (a [0,1] vs [0,255] mix-up silently ruins every metric); fix gray/RGB."""
    if not torch.is_tensor(images) or images.dtype != torch.uint8:
        raise ConfigError(
            f"feature extractors take uint8 images, got {getattr(images, 'dtype', type(images).__name__)}",
            hint="quantise with (x * 127.5 + 128).clip(0, 255).to(torch.uint8)",
        )
    if images.ndim != 4:
        raise ConfigError(f"expected images shaped [N, C, H, W], got {tuple(images.shape)}")
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1)  # grayscale PNGs read as RGB, like PIL's convert("RGB")
    raise ConfigError(f"this extractor takes {channels}-channel images, got {c} channels")


# ---------------------------------------------------------------- TF32 ----

def _tf32_flags() -> dict[str, object]:
    # torch >= 2.9 has per-backend fp32_precision; mixing it with the legacy
    # allow_tf32 flags raises, so use whichever API this torch has.
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision") and hasattr(torch.backends.cudnn, "conv"):
        return {"matmul": matmul.fp32_precision, "conv": torch.backends.cudnn.conv.fp32_precision}
    return {"matmul": matmul.allow_tf32, "conv": torch.backends.cudnn.allow_tf32}


def _set_tf32_flags(flags: dict[str, object]) -> None:
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision") and hasattr(torch.backends.cudnn, "conv"):
        matmul.fp32_precision = flags["matmul"]
        torch.backends.cudnn.conv.fp32_precision = flags["conv"]
    else:
        matmul.allow_tf32 = flags["matmul"]
        torch.backends.cudnn.allow_tf32 = flags["conv"]


def tf32_enabled() -> bool:
    """Whether matmuls or convolutions may currently use TF32."""
    flags = _tf32_flags()
    return any(v is True or v == "tf32" for v in flags.values())


@contextlib.contextmanager
def tf32_disabled() -> Iterator[None]:
    """Run in full fp32 (TF32 shifts Inception features on A100/H100); restore the flags after."""
    saved = _tf32_flags()
    off = {k: (False if isinstance(v, bool) else "ieee") for k, v in saved.items()}
    _set_tf32_flags(off)
    try:
        yield
    finally:
        _set_tf32_flags(saved)
