"""Stable Diffusion 1.5 from a local diffusers folder (the COCO-2014 T2I suite's teacher).

SD 1.5 is many files, so it is given as a folder in the diffusers layout and read
with `local_files_only=True`: nothing is downloaded. diffusers and transformers are
the optional `t2i` extra and are imported only here, on use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sidbench.errors import AssetError, ConfigError

EXPECTED = ("model_index.json", "unet/", "vae/", "text_encoder/", "tokenizer/", "scheduler/")
_INSTALL_HINT = 'install the text-to-image extra: pip install -e ".[t2i]"'


@dataclass
class SD15:
    """The parts of SD 1.5 that SiD-LSG uses."""

    unet: Any  # diffusers UNet2DConditionModel
    vae: Any  # diffusers AutoencoderKL
    text_encoder: Any  # transformers CLIPTextModel
    tokenizer: Any  # transformers CLIPTokenizer
    scheduler: Any  # diffusers DDPMScheduler (its config holds the 1000-step beta schedule)
    path: Path


def check_sd15_folder(path: str | os.PathLike) -> Path:
    """The folder, if it has the diffusers layout; otherwise one AssetError listing what is missing."""
    root = Path(path)
    if not root.is_dir():
        raise AssetError(f"Stable Diffusion 1.5 folder {root} does not exist",
                         hint=f"give a local diffusers folder with {', '.join(EXPECTED)} "
                              "(e.g. a downloaded runwayml/stable-diffusion-v1-5 snapshot)")
    missing = []
    for name in EXPECTED:
        target = root / name.rstrip("/")
        if not (target.is_dir() if name.endswith("/") else target.is_file()):
            missing.append(name)
    if missing:
        raise AssetError(f"{root} is not a diffusers Stable Diffusion folder: missing {', '.join(missing)}",
                         hint=f"the folder must hold {', '.join(EXPECTED)}")
    return root


def _import_t2i() -> tuple[Any, Any]:
    try:
        import diffusers
        import transformers
    except ImportError as exc:
        raise ConfigError(f"Stable Diffusion needs diffusers and transformers ({exc.name or exc} is missing)",
                          hint=_INSTALL_HINT) from None
    return diffusers, transformers


def load_sd15(path: str | os.PathLike, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32) -> SD15:
    """Load UNet, VAE, CLIP text encoder, tokenizer and DDPM scheduler from a local folder (eval mode)."""
    root = check_sd15_folder(path)
    diffusers, transformers = _import_t2i()
    common: dict[str, Any] = dict(local_files_only=True)
    weights: dict[str, Any] = dict(torch_dtype=dtype, **common)
    try:
        unet = diffusers.UNet2DConditionModel.from_pretrained(root, subfolder="unet", **weights)
        vae = diffusers.AutoencoderKL.from_pretrained(root, subfolder="vae", **weights)
        text_encoder = transformers.CLIPTextModel.from_pretrained(root, subfolder="text_encoder", **weights)
        tokenizer = transformers.CLIPTokenizer.from_pretrained(root, subfolder="tokenizer", **common)
        scheduler = diffusers.DDPMScheduler.from_pretrained(root, subfolder="scheduler", **common)
    except (OSError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AssetError(f"cannot load Stable Diffusion 1.5 from {root}: {msg}",
                         hint="the folder is incomplete; download the full diffusers snapshot again",
                         ) from None
    for module in (unet, vae, text_encoder):  # callers that train a copy re-enable its gradients
        module.to(device).eval().requires_grad_(False)
    return SD15(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
                path=root)
