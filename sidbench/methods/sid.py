"""SiD: Score identity Distillation (Zhou et al., ICML 2024; arXiv:2404.04057), data-free.

A one-step generator G(z) = generator(sigma_init * z, sigma_init) (a teacher copy) is trained
against the teacher f_phi with a fake score network f_psi (another teacher copy) that tracks the
generator's distribution. Each iteration: a fake-net step (EDM's loss on generated images), then a
generator step (the SiD loss). The losses below are pure functions of explicit tensors, checked
against the authors' `training/sid_loss.py` (tests/tools/compare_sid_authors.py); the updates draw
their randomness from `ctx.draws` in the order each docstring gives, which is part of the version.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sidbench.methods.base import LossOutput, Method, NetworkSpec, Phase, Update, UpdateContext
from sidbench.methods.edm import (
    AugmentSettings,
    augment,
    denoising_loss,
    labels_of,
    lognormal_sigma,
    nan_free,
    zero_augment_labels,
    zero_rows,
)
from sidbench.methods.settings import check_number


def generate_images(generator: torch.nn.Module, z: torch.Tensor, labels: torch.Tensor | None,
                    sigma_init: float) -> torch.Tensor:
    """G(z) = generator(sigma_init * z, sigma_init, labels, augment_labels=0): the one-step generator.

    `z` is standard normal [b, C, H, W]; the zero augment labels (when the net has an augment layer)
    are the authors' `torch.zeros(b, 9)`.
    """
    sigma = torch.full((z.shape[0], 1, 1, 1), float(sigma_init), device=z.device, dtype=z.dtype)
    return generator(sigma_init * z, sigma, labels, augment_labels=zero_augment_labels(generator, z))


def generator_sigma(u: torch.Tensor, tmax: int = 800, sigma_min: float = 0.002, sigma_max: float = 80.0,
                    rho: float = 7.0) -> torch.Tensor:
    """The generator loss's noise levels from uniform draws u in [0, 1):

    t = u * tmax / 1000, sigma = (smax^(1/rho) + (1 - t) * (smin^(1/rho) - smax^(1/rho)))^rho:
    t = 0 gives smin, t -> 1 gives smax, and tmax 800 keeps sigma in [0.002, 24.41] (`--tmax 800`).
    """
    t = u * tmax / 1000
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + (1 - t) * (lo - hi)) ** rho


def sid_terms(x_g: torch.Tensor, y_real: torch.Tensor, y_fake: torch.Tensor, keep: torch.Tensor,
              alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss [b], w [b,1,1,1]) from the two denoisers' outputs; samples not in `keep` give 0.

    loss = sum_{C,H,W} (y_r - y_f) * ((y_r - x_g) - alpha * (y_r - y_f)) / w,
    w = sg(mean_{C,H,W} |x_g - y_r|) floored at 1e-5.
    """
    x_g, y_real, y_fake = zero_rows(x_g, keep), zero_rows(y_real, keep), zero_rows(y_fake, keep)
    with torch.no_grad():
        w = (x_g - y_real).abs().to(torch.float32).flatten(start_dim=1).mean(dim=1).clamp(min=1e-5)
        w = w.reshape(-1, *([1] * (x_g.ndim - 1)))
    loss = (y_real - y_fake) * ((y_real - x_g) - alpha * (y_real - y_fake)) / w
    return loss.flatten(start_dim=1).sum(dim=1), w


def generator_loss(teacher: torch.nn.Module, fake: torch.nn.Module, x_g: torch.Tensor, sigma: torch.Tensor,
                   noise: torch.Tensor, labels: torch.Tensor | None = None,
                   alpha: float = 1.2) -> torch.Tensor:
    """SiD's generator loss per sample, [b], before the x100 scale and the batch mean.

    x_t = x_g + sigma * noise; y_r = f_phi(x_t), y_f = f_psi(x_t) (zero augment labels);
    loss = sum_{C,H,W} (y_r - y_f) * ((y_r - x_g) - alpha * (y_r - y_f)) / w,
    w = sg(mean_{C,H,W} |x_g - y_r|) floored at 1e-5. Gradients reach x_g directly and through both
    networks' inputs. A sample with a NaN in x_g, y_r or y_f contributes 0 (the authors drop it).
    """
    x_t = x_g + sigma * noise
    y_real = teacher(x_t, sigma, labels, augment_labels=zero_augment_labels(teacher, x_t))
    y_fake = fake(x_t, sigma, labels, augment_labels=zero_augment_labels(fake, x_t))
    return sid_terms(x_g, y_real, y_fake, nan_free(x_g, y_real, y_fake), alpha)[0]


def fake_score_loss(fake: torch.nn.Module, x_g: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor,
                    labels: torch.Tensor | None = None,
                    augment_labels: torch.Tensor | None = None) -> torch.Tensor:
    """The fake score network's loss per sample, [b]: EDM's lambda(sigma)-weighted denoising loss on x_g,

    sum_{C,H,W} lambda(sigma) * (f_psi(x_g + sigma * noise, sigma) - x_g)^2, with x_g already augmented
    where the recipe says so (then `augment_labels` are the pipeline's). NaN samples contribute 0.
    """
    return denoising_loss(fake, x_g, sigma, noise, labels, augment_labels)


@dataclass(frozen=True)
class Settings(AugmentSettings):
    """SiD's settings, named after the authors' flags where they have one.

    sigma_init (`--init_sigma`), alpha, tmax (u ~ U[0, tmax/1000)), the generator loss's Karras
    range (sigma_min, sigma_max, rho), the fake loss's log-normal (P_mean, P_std), loss_scale
    (`--lsg`, the generator's x100), fake_loss_scale (`--ls`), EDM augmentation of the fake loss
    (`--augment`: p 0.12 CIFAR, 0.15 FFHQ/AFHQv2, 0 ImageNet). Optimiser, dropout and EMA are
    per-network training settings of the recipe.
    """

    sigma_init: float = 2.5
    alpha: float = 1.2
    tmax: int = 800
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    P_mean: float = -1.2
    P_std: float = 1.2
    loss_scale: float = 100.0
    fake_loss_scale: float = 1.0

    def validate(self, method: str = "sid") -> None:
        check_number(method, "sigma_init", self.sigma_init, low=0, low_open=True)
        check_number(method, "alpha", self.alpha)
        check_number(method, "tmax", self.tmax, low=0, high=1000, low_open=True, integer=True)
        check_number(method, "sigma_min", self.sigma_min, low=0, low_open=True)
        check_number(method, "sigma_max", self.sigma_max, low=self.sigma_min, low_open=True)
        check_number(method, "rho", self.rho, low=0, low_open=True)
        check_number(method, "P_mean", self.P_mean)
        check_number(method, "P_std", self.P_std, low=0, low_open=True)
        check_number(method, "loss_scale", self.loss_scale, low=0, low_open=True)
        check_number(method, "fake_loss_scale", self.fake_loss_scale, low=0, low_open=True)
        self.validate_augment(method)


def fake_images(ctx: UpdateContext, labels: torch.Tensor | None) -> torch.Tensor:
    """Draws z [C,H,W] and makes G(z) without a graph, the generator in eval mode (no dropout)."""
    generator = ctx.nets["generator"]
    generator.eval()
    z = ctx.draws.randn(*ctx.img_shape)
    with torch.no_grad():
        return generate_images(generator, z, labels, ctx.settings.sigma_init)


def fake_score_update(ctx: UpdateContext) -> LossOutput:
    """Fake-net step. Modes: generator eval, fake net train, teacher eval. Draw order (per sample):
    z [C,H,W]; sigma normal [1,1,1]; augmentation (augment_p > 0 only); noise [C,H,W]."""
    s: Settings = ctx.settings
    ctx.nets["teacher"].eval()
    fake = ctx.nets["fake_score"]
    labels = labels_of(ctx, "sid")
    x_g = fake_images(ctx, labels)
    fake.train()
    sigma = lognormal_sigma(ctx.draws.randn(1, 1, 1), s.P_mean, s.P_std)
    x_aug, augment_labels = augment(x_g, ctx.draws, s)
    noise = ctx.draws.randn(*ctx.img_shape)
    loss = fake_score_loss(fake, x_aug, sigma, noise, labels, augment_labels)
    return LossOutput(loss, terms={"fake_score": loss}, scale=s.fake_loss_scale)


def generator_inputs(ctx: UpdateContext,
                     labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_g with its graph, sigma, noise) for a generator step; generator train, fake net and teacher eval.

    Draw order (per sample): z [C,H,W]; u [1,1,1] (sigma, tmax law); noise [C,H,W].
    """
    s = ctx.settings
    generator = ctx.nets["generator"]
    ctx.nets["teacher"].eval()
    ctx.nets["fake_score"].eval()
    generator.train()
    z = ctx.draws.randn(*ctx.img_shape)
    x_g = generate_images(generator, z, labels, s.sigma_init)
    sigma = generator_sigma(ctx.draws.rand(1, 1, 1), s.tmax, s.sigma_min, s.sigma_max, s.rho)
    noise = ctx.draws.randn(*ctx.img_shape)
    return x_g, sigma, noise


def generator_update(ctx: UpdateContext) -> LossOutput:
    """Generator step: the SiD loss, scaled by loss_scale (x100); draw order in `generator_inputs`."""
    s: Settings = ctx.settings
    labels = labels_of(ctx, "sid")
    x_g, sigma, noise = generator_inputs(ctx, labels)
    loss = generator_loss(ctx.nets["teacher"], ctx.nets["fake_score"], x_g, sigma, noise, labels, s.alpha)
    return LossOutput(loss, terms={"generator": loss}, scale=s.loss_scale)


def _phases(settings: Settings) -> tuple[Phase, ...]:
    return (Phase("alternate", ("fake_score", "generator")),)


SID = Method(
    name="sid",
    version="1.0.0",
    paper="Score identity Distillation: Exponentially Fast Distillation of Pretrained Diffusion Models for "
          "One-Step Generation (Zhou et al., ICML 2024; arXiv:2404.04057)",
    description="Data-free one-step distillation: a fake-score step, then the SiD generator step.",
    networks=(NetworkSpec("generator", init="teacher", ema=True), NetworkSpec("fake_score", init="teacher")),
    settings=Settings,
    updates=(Update("fake_score", "fake_score", fake_score_update),
             Update("generator", "generator", generator_update)),
    phases=_phases,
)
