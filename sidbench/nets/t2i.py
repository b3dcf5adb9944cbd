"""A text-to-image teacher as the trainer and the sampler use it: denoiser, prompt encoder, decoder.

Two sources, one shape:
- a local diffusers folder (Stable Diffusion 1.5 / 2.1-base; `sidbench.nets.sd15` checks and loads it
  with `local_files_only=True`): the UNet wrapped as an `EpsDenoiser` with the scheduler's DDPM
  schedule, CLIP's tokenizer and text encoder, and the VAE decoder (latents / scaling_factor);
- a native network folder whose `EpsDenoiser` carries its own text encoder and word vocabulary (the
  digits-t2i teacher trained here): pixel space, the decoder is the identity.
Everything is frozen (eval mode, no gradients); method networks copy `denoiser` only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sidbench.errors import AssetError
from sidbench.nets.eps_unet import EpsDenoiser
from sidbench.nets.prompts import PromptEncoder, clip_tokenize


@dataclass
class T2ITeacher:
    denoiser: EpsDenoiser
    prompts: PromptEncoder
    decode: Callable[[torch.Tensor], torch.Tensor]  # latents -> images in [-1, 1] (float32)
    latent_shape: tuple[int, int, int]
    info: dict[str, Any] = field(default_factory=dict)  # path, sha256, kind: what records say

    @property
    def config(self) -> dict[str, Any]:
        return {"class_name": "EpsDenoiser", "init_kwargs": dict(self.denoiser.init_kwargs)}


def is_diffusers_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / "model_index.json").is_file()


def _vae_decoder(vae: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    scale = float(vae.config.scaling_factor)

    @torch.no_grad()
    def decode(latents: torch.Tensor) -> torch.Tensor:
        dtype = next(vae.parameters()).dtype
        images = vae.decode((latents / scale).to(dtype), return_dict=False)[0]
        return images.to(torch.float32)

    return decode


def _identity(latents: torch.Tensor) -> torch.Tensor:
    return latents.to(torch.float32)


def load_diffusers_teacher(path: str | os.PathLike, device: str | torch.device = "cpu",
                           dtype: torch.dtype = torch.float32) -> T2ITeacher:
    from sidbench.fileio import sha256_file
    from sidbench.nets.sd15 import load_sd15

    sd = load_sd15(path, device=device, dtype=dtype)
    sched = dict(sd.scheduler.config)
    schedule = {k: sched[k] for k in ("beta_schedule", "beta_start", "beta_end", "num_train_timesteps")}
    denoiser = EpsDenoiser.wrap(sd.unet, schedule).to(device).eval().requires_grad_(False)
    weights = sd.path / "unet" / "diffusion_pytorch_model.safetensors"
    digest = sha256_file(weights) if weights.is_file() else None
    encoder = PromptEncoder(sd.text_encoder, clip_tokenize(sd.tokenizer), "CLIPTokenizer + CLIPTextModel")
    c = int(sd.unet.config.in_channels)
    r = int(sd.unet.config.sample_size)
    return T2ITeacher(denoiser=denoiser, prompts=encoder, decode=_vae_decoder(sd.vae), latent_shape=(c, r, r),
                      info={"path": str(sd.path), "sha256": digest, "kind": "diffusers",
                            "class_name": "EpsDenoiser",
                            "vae_scaling_factor": float(sd.vae.config.scaling_factor)})


def load_native_teacher(path: str | os.PathLike, device: str | torch.device = "cpu") -> T2ITeacher:
    from sidbench.nets.native import load_network, read_network_record

    record = read_network_record(path)
    if record["class_name"] != "EpsDenoiser":
        raise AssetError(f"{path} holds a {record['class_name']}, not a text-to-image EpsDenoiser",
                         hint="give a text-to-image teacher (a diffusers folder or an EpsDenoiser folder)")
    net = load_network(path, device=device)
    _word_encoder(net, where=f"{path}: ")  # refuses a net without its text encoder before splitting it
    denoiser, text_encoder = net.without_text_encoder()
    denoiser.eval().requires_grad_(False)
    encoder = PromptEncoder(text_encoder, denoiser.tokenizer, "WordTokenizer + CLIPTextModel")
    return _native(denoiser, encoder, {"path": str(path), "sha256": record["weights_sha256"]})


def load_t2i_teacher(path: str | os.PathLike, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32) -> T2ITeacher:
    """The teacher at `path`: a diffusers folder (SD) or a native EpsDenoiser folder (digits-t2i)."""
    p = Path(path)
    if is_diffusers_folder(p):
        return load_diffusers_teacher(p, device, dtype)
    if (p / "network.json").is_file() or p.name == "network.json":
        return load_native_teacher(p, device)
    raise AssetError(f"{p} is neither a diffusers folder (model_index.json) nor a network folder "
                     "(network.json)",
                     hint="give a local Stable Diffusion folder (diffusers layout) or the digits-t2i teacher")


def _word_encoder(net: EpsDenoiser, freeze: bool = True, where: str = "") -> PromptEncoder:
    """The PromptEncoder of a native EpsDenoiser's own text encoder and word tokenizer."""
    if net.text_encoder is None or net.tokenizer is None:
        raise AssetError(f"{where}this EpsDenoiser carries no text encoder and tokenizer",
                         hint="a native text-to-image teacher must include its text encoder")
    return PromptEncoder(net.text_encoder, net.tokenizer, "WordTokenizer + CLIPTextModel", freeze=freeze)


def _native(denoiser: EpsDenoiser, encoder: PromptEncoder, info: dict[str, Any]) -> T2ITeacher:
    """A pixel-space teacher: the decoder is the identity, the latents are the images."""
    c, r = denoiser.img_channels, denoiser.img_resolution
    return T2ITeacher(denoiser=denoiser, prompts=encoder, decode=_identity, latent_shape=(c, r, r),
                      info={**info, "kind": "native", "class_name": "EpsDenoiser"})


def teacher_view(net: EpsDenoiser) -> T2ITeacher:
    """A native EpsDenoiser that carries its text encoder (a teacher being trained) as a T2ITeacher,
    without changing it: its text encoder is shared, not frozen, and the empty prompt is not cached
    across calls (the encoder may change between evaluations)."""
    return _native(net, _word_encoder(net, freeze=False), {})
