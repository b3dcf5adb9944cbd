"""SiDA: SiD with an Adversarial loss (Zhou et al., ICLR 2025; arXiv:2410.14919); SiD²A.

SiD plus the suite's real images and a GAN term whose discriminator is the fake score network's
own encoder: the channel mean of its last encoder block's output, a [b, 1, h, w] logit map, no new
parameters. Fake-net step: EDM's loss on generated images plus a lambda(sigma)-weighted BCE
(real 1, fake 0; real and fake noised with the same sigma and noise). Generator step: the SiD loss
combined 0.5/0.5 with a non-saturating BCE from 200 kimg; no generator step before 100 kimg.
Checked against the authors' `sida_training/sida_loss.py` (branch sida).

SiD²A is this method started from a SiD generator: the recipe's `training.init_generator` makes
the trainer load the generator and its EMA from a SiD checkpoint (the fake net still starts from
the teacher); nothing else changes.

One deliberate difference: the authors read the fake images' logits from the same forward pass
as the fake net's denoised output; here `encoder_features` is a second encoder pass. Values and
gradients are equal whenever dropout is off (the generator step, eval mode); in the fake-net
step (train mode) the two passes draw their own dropout masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sidbench.methods.base import LossOutput, Method, NetworkSpec, Phase, Update, UpdateContext
from sidbench.methods.edm import (
    augment,
    denoising_error,
    images_of,
    labels_of,
    lognormal_sigma,
    loss_weight,
    nan_free,
    sigma_data,
    unwrap,
    zero_augment_labels,
    zero_rows,
)
from sidbench.methods.settings import check_number
from sidbench.methods.sid import Settings as SiDSettings
from sidbench.methods.sid import fake_images, generator_inputs, sid_terms


def discriminator_logits(fake: torch.nn.Module, x_t: torch.Tensor, sigma: torch.Tensor,
                         labels: torch.Tensor | None = None,
                         augment_labels: torch.Tensor | None = None) -> torch.Tensor:
    """[b, 1, h, w]: the channel mean of the fake net's last encoder block output at (x_t, sigma)."""
    feats = unwrap(fake).encoder_features(x_t, sigma, labels, augment_labels=augment_labels)
    return feats.mean(dim=1, keepdim=True)


def batch_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean over the kept samples and all positions of `values` [b, ...] (the authors' BCE `mean`)."""
    per_sample = values.flatten(start_dim=1).mean(dim=1)
    return (per_sample * keep).sum() / keep.sum().clamp(min=1)


def generator_losses(teacher: torch.nn.Module, fake: torch.nn.Module, x_g: torch.Tensor, sigma: torch.Tensor,
                     noise: torch.Tensor, labels: torch.Tensor | None = None,
                     alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(sid [b], gan [b]): SiDA's generator terms before the update's scalings.

    x_t = x_g + sigma * noise; sid is SiD's loss (`sid.generator_loss`) with its normaliser
    w = sg(mean_{C,H,W} |x_g - y_r|) floored at 1e-5; with logits l = D(x_t) (`discriminator_logits`),
    gan_i = mean_{kept samples j, positions} BCE(clamp(l, -10, 10), 1) / w_i: a non-saturating loss
    averaged over this micro-batch (the per-GPU mean), divided by each sample's w. The update
    multiplies gan by C*H*W and 0.01. A sample with a NaN in x_g, y_r, y_f or its logits gives 0 and
    is left out of the mean.
    """
    x_t = x_g + sigma * noise
    zeros_fake = zero_augment_labels(fake, x_t)
    y_real = teacher(x_t, sigma, labels, augment_labels=zero_augment_labels(teacher, x_t))
    y_fake = fake(x_t, sigma, labels, augment_labels=zeros_fake)
    logits = discriminator_logits(fake, x_t, sigma, labels, zeros_fake)
    keep = nan_free(x_g, y_real, y_fake, logits)
    sid, w = sid_terms(x_g, y_real, y_fake, keep, alpha)
    logits = zero_rows(logits, keep).clamp(-10, 10)
    bce = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    gan = batch_mean(bce, keep) / w.flatten() * keep
    return sid, gan


def fake_score_losses(fake: torch.nn.Module, x_g: torch.Tensor, x_real: torch.Tensor, sigma: torch.Tensor,
                      noise: torch.Tensor, labels: torch.Tensor | None = None,
                      augment_labels: torch.Tensor | None = None,
                      real_augment_labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(denoise [b], discriminator [b]): SiDA's fake-net terms before the update's scalings.

    Both images are already augmented where the recipe says so (None labels: not augmented, the
    authors' zero labels). With x_t = x_g + sigma*noise and the real image noised with the same
    sigma and noise: denoise_i = sum_{C,H,W} lambda(sigma_i) (f_psi(x_t) - x_g)^2 (EDM's loss);
    discriminator_i = lambda(sigma_i) * (mean BCE(l_real, 1) + mean BCE(l_fake, 0)) / 2, means over
    this micro-batch and all logit positions. A sample with a NaN in x_g, f_psi(x_t) or either logit
    map gives 0 and is left out of the means.
    """
    if augment_labels is None:
        augment_labels = zero_augment_labels(fake, x_g)
    if real_augment_labels is None:
        real_augment_labels = zero_augment_labels(fake, x_real)
    x_t = x_g + sigma * noise
    denoised = fake(x_t, sigma, labels, augment_labels=augment_labels)
    logit_fake = discriminator_logits(fake, x_t, sigma, labels, augment_labels)
    logit_real = discriminator_logits(fake, x_real + sigma * noise, sigma, labels, real_augment_labels)
    keep = nan_free(x_g, denoised, logit_fake, logit_real)
    weight = loss_weight(sigma, sigma_data(fake))
    denoise = denoising_error(x_g, denoised, weight, keep)
    logit_real, logit_fake = zero_rows(logit_real, keep), zero_rows(logit_fake, keep)
    bce_real = F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real), reduction="none")
    bce_fake = F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake), reduction="none")
    discriminator = weight.flatten() * (batch_mean(bce_real, keep) + batch_mean(bce_fake, keep)) / 2 * keep
    return denoise, discriminator


@dataclass(frozen=True)
class Settings(SiDSettings):
    """SiD's settings (alpha 1 on every suite) plus the GAN scalings and the authors' hard-coded gates.

    gan_scale (`--lsg_gan` 0.01, times C*H*W), disc_scale (`--lsd` 1), generator_start_kimg 100 (no
    generator step before it) and gan_start_kimg 200 (GAN term in the generator loss after it).
    """

    alpha: float = 1.0
    gan_scale: float = 0.01
    disc_scale: float = 1.0
    generator_start_kimg: float = 100.0
    gan_start_kimg: float = 200.0

    def validate(self, method: str = "sida") -> None:
        super().validate(method)
        check_number(method, "gan_scale", self.gan_scale, low=0)
        check_number(method, "disc_scale", self.disc_scale, low=0)
        check_number(method, "generator_start_kimg", self.generator_start_kimg, low=0)
        check_number(method, "gan_start_kimg", self.gan_start_kimg, low=0)


def fake_score_update(ctx: UpdateContext) -> LossOutput:
    """Fake-net step on the loader's batch (real images; their labels for the fakes too).

    Modes: generator eval, fake net train, teacher eval. Draw order (per sample): z [C,H,W];
    sigma normal [1,1,1]; fake-image augmentation (augment_p > 0 only); noise [C,H,W];
    real-image augmentation (augment_p > 0 only).
    """
    s: Settings = ctx.settings
    ctx.nets["teacher"].eval()
    fake = ctx.nets["fake_score"]
    real = images_of(ctx, "sida")
    labels = labels_of(ctx, "sida")
    x_g = fake_images(ctx, labels)
    fake.train()
    d = ctx.draws
    sigma = lognormal_sigma(d.randn(1, 1, 1), s.P_mean, s.P_std)
    x_aug, augment_labels = augment(x_g, d, s)
    noise = d.randn(*ctx.img_shape)
    real_aug, real_augment_labels = augment(real, d, s)
    denoise, disc = fake_score_losses(fake, x_aug, real_aug, sigma, noise, labels, augment_labels,
                                      real_augment_labels)
    return LossOutput(s.fake_loss_scale * denoise + s.disc_scale * disc,
                      terms={"fake_score": denoise, "discriminator": disc})


def generator_update(ctx: UpdateContext) -> LossOutput:
    """Generator step: loss_scale * sid, and from gan_start_kimg on (kimg > 200, as the authors'
    `cur_nimg > 200*1000`) 0.5 * loss_scale * sid + 0.5 * gan_scale * C*H*W * gan. Modes and draw order
    as SiD's generator step (`sid.generator_inputs`)."""
    s: Settings = ctx.settings
    labels = labels_of(ctx, "sida")
    x_g, sigma, noise = generator_inputs(ctx, labels)
    teacher, fake = ctx.nets["teacher"], ctx.nets["fake_score"]
    sid, gan = generator_losses(teacher, fake, x_g, sigma, noise, labels, s.alpha)
    if ctx.kimg > s.gan_start_kimg:
        per_sample = 0.5 * s.loss_scale * sid + 0.5 * s.gan_scale * math.prod(ctx.img_shape) * gan
    else:
        per_sample = s.loss_scale * sid
    return LossOutput(per_sample, terms={"sid": sid, "gan": gan})


def _phases(settings: Settings) -> tuple[Phase, ...]:
    alternate = Phase("alternate", ("fake_score", "generator"))
    if settings.generator_start_kimg > 0:
        warmup = Phase("fake_score_warmup", ("fake_score",), until_kimg=settings.generator_start_kimg)
        return (warmup, alternate)
    return (alternate,)


SIDA = Method(
    name="sida",
    version="1.0.0",
    paper="Adversarial Score identity Distillation: Rapidly Surpassing the Teacher in One Step "
          "(Zhou et al., ICLR 2025; arXiv:2410.14919)",
    description="SiD plus a GAN term whose discriminator is the fake net's encoder; needs the real images. "
                "SiD²A: the same with training.init_generator set to a SiD generator.",
    networks=(NetworkSpec("generator", init="teacher", ema=True), NetworkSpec("fake_score", init="teacher")),
    settings=Settings,
    updates=(Update("fake_score", "fake_score", fake_score_update),
             Update("generator", "generator", generator_update)),
    phases=_phases,
    needs_real_data=True,
)
