"""`ddpm-t2i`: train a text-conditional eps-prediction teacher from scratch (the digits-t2i teacher).

Stable Diffusion's objective at small scale: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps at
t ~ U{0..999}, loss = sum_{C,H,W} (eps_theta(x_t, t, c) - eps)^2 (per sample), with the caption c
replaced by the
empty prompt at rate `prompt_dropout` so that one network gives both branches of classifier-free
guidance. Unlike SD, the text encoder (a small CLIPTextModel inside the `EpsDenoiser`) trains with
the UNet: captions come from the image labels through the suite's caption templates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sidbench.errors import ConfigError
from sidbench.methods.base import LossOutput, Method, NetworkSpec, Phase, Update, UpdateContext
from sidbench.methods.edm import unwrap
from sidbench.methods.settings import check_number
from sidbench.methods.sid_lsg import drop_prompts
from sidbench.nets import ddpm


def eps_loss(eps_pred: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """sum_{C,H,W} (eps_pred - noise)^2 per sample, as EDM's loss (the trainer takes the batch mean)."""
    return (eps_pred - noise).square().flatten(start_dim=1).sum(dim=1)


@dataclass(frozen=True)
class Settings:
    prompt_dropout: float = 0.1

    def validate(self, method: str = "ddpm-t2i") -> None:
        check_number(method, "prompt_dropout", self.prompt_dropout, low=0, high=1)


def denoiser_update(ctx: UpdateContext) -> LossOutput:
    """Draw order (per sample): caption template; dropout u [1]; t; noise [C,H,W]."""
    s: Settings = ctx.settings
    if ctx.images is None or ctx.labels is None or ctx.conditioning is None:
        raise ConfigError("ddpm-t2i trains on captioned images; this suite gives none",
                          hint="use the digits-t2i suite")
    net = ctx.nets["denoiser"]
    inner = unwrap(net)
    if inner.text_encoder is None or inner.tokenizer is None:
        raise ConfigError("ddpm-t2i trains an EpsDenoiser with its own text encoder and tokenizer",
                          hint="use the suite's teacher_network architecture")
    prompts = ctx.conditioning.captions_for_labels(ctx.labels, ctx.draws)
    prompts = drop_prompts(prompts, ctx.draws.rand(1), s.prompt_dropout)
    t = ctx.draws.randint(inner.num_train_timesteps).reshape(-1)
    noise = ctx.draws.randn(*ctx.img_shape)
    ids = inner.tokenizer(prompts).to(ctx.images.device)
    text = inner.text_encoder(ids)[0]
    x_t = ddpm.add_noise(inner.alphas_cumprod, ctx.images, noise, t)
    loss = eps_loss(net(x_t, None, timesteps=t, text=text, output="eps"), noise)
    return LossOutput(loss, terms={"eps_mse": loss})


DDPM_T2I = Method(
    name="ddpm-t2i",
    version="1.0.0",
    paper="Denoising Diffusion Probabilistic Models (Ho et al., 2020) with text conditioning and "
          "classifier-free guidance dropout (Ho & Salimans, 2022), as Stable Diffusion trains",
    description="Trains a text-conditional eps-prediction UNet and its text encoder from scratch.",
    networks=(NetworkSpec("denoiser", init="scratch", ema=True),),
    settings=Settings,
    updates=(Update("denoiser", "denoiser", denoiser_update),),
    phases=lambda settings: (Phase("train", ("denoiser",)),),
    needs_real_data=True,
    product="denoiser",
    product_role="teacher",
)
