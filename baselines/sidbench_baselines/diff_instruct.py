"""Diff-Instruct (Luo et al., NeurIPS 2023; arXiv:2305.18455), data-free, as a sidbench method plugin.

A one-step generator G(z) = generator(sigma_init * z, sigma_init) (a teacher copy, sigma_init 1.0) is
trained against the teacher f_phi with a fake score network f_psi (another teacher copy) that tracks
the generator's distribution. Each iteration: a fake-net step (EDM's loss on generated images, EDM
augmentation p 0.12 on CIFAR-10), then a generator step whose loss is the Integral-KL gradient
written as a product: sum_{C,H,W} (f_psi(x_t) - f_phi(x_t)) * x_g, both nets under no_grad, weight 1,
log-normal sigma. Read in the authors' code, pkulwj1994/diff_instruct@0c37389
(`training/di_loss.py` `DI_EDMLoss.gloss` / `__call__`, `training/di_training_loop.py`, `di_train.py`);
checked against it by tests/tools/compare_diff_instruct_authors.py.

Shared dropout masks: the authors' `gloss` puts *both* networks in train mode and restores the CUDA
RNG state between the teacher's and the fake net's forward passes, so the two draw the same dropout
masks (same architecture, same dropout rate). `generator_loss` does the same with the RNG of the
tensors' device (and the CPU's): the trainer seeds the global RNG before every update, so the masks
are reproducible and identical for the two calls. They coincide only when both networks have the same
dropout rate: the recipes leave the fake net's `dropout` null (the teacher's own).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from sidbench.errors import ConfigError
from sidbench.methods.base import LossOutput, Method, NetworkSpec, Phase, Update, UpdateContext
from sidbench.methods.edm import (
    AugmentSettings,
    augment,
    denoising_loss,
    labels_of,
    lognormal_sigma,
    zero_augment_labels,
)
from sidbench.methods.settings import check_number
from sidbench.methods.sid import fake_images, generate_images

NAME = "diff-instruct"

__all__ = ["DIFF_INSTRUCT", "Settings", "fake_score_loss", "generate_images", "generator_loss",
           "shared_rng"]


@contextlib.contextmanager
def shared_rng(device: torch.device) -> Iterator[Callable[[], None]]:
    """Yields `rewind()`, which puts the global RNG (CPU, and `device`'s when it is CUDA) back where it
    was on entry: two forward passes separated by `rewind()` draw the same dropout masks."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def rewind() -> None:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)

    yield rewind


def generator_loss(teacher: torch.nn.Module, fake: torch.nn.Module, x_g: torch.Tensor, sigma: torch.Tensor,
                   noise: torch.Tensor, labels: torch.Tensor | None = None,
                   share_dropout: bool = True) -> torch.Tensor:
    """Diff-Instruct's generator loss per sample, [b], before `loss_scale` (`--ls`) and the batch mean.

    x_t = x_g + sigma * noise; with y_r = f_phi(x_t) and y_f = f_psi(x_t) computed under no_grad (zero
    augment labels, the authors' `torch.zeros(b, 9)`),
        loss = sum_{C,H,W} (y_f - y_r) * x_g,
    weight 1: the gradient reaches the generator only through the multiplier x_g (it is y_f - y_r).
    This is what the authors' `gloss` returns, summed over pixels as their loop does. The networks'
    modes are the caller's (the update puts both in train mode, as `gloss` does); with `share_dropout`
    the RNG is rewound between the two calls, so both draw the same dropout masks. No NaN rule: the
    authors have none, and a NaN reaches the trainer's guard.
    """
    with torch.no_grad():
        x_t = (x_g + sigma * noise).detach()
        with shared_rng(x_t.device) as rewind:
            y_real = teacher(x_t, sigma, labels, augment_labels=zero_augment_labels(teacher, x_t))
            if share_dropout:
                rewind()
            y_fake = fake(x_t, sigma, labels, augment_labels=zero_augment_labels(fake, x_t))
    return ((y_fake - y_real) * x_g).flatten(start_dim=1).sum(dim=1)


def fake_score_loss(fake: torch.nn.Module, x_g: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor,
                    labels: torch.Tensor | None = None,
                    augment_labels: torch.Tensor | None = None) -> torch.Tensor:
    """The fake score network's loss per sample, [b]: EDM's loss on the generated images (the authors'
    `DI_EDMLoss.__call__`, summed over pixels by their loop),

    sum_{C,H,W} lambda(sigma) * (f_psi(x_g + sigma * noise, sigma) - x_g)^2, x_g already augmented where
    the recipe says so (`augment_labels` then the pipeline's). A sample holding NaN contributes 0 (the
    shared EDM loss; the authors keep it, which only matters to the trainer's NaN guard).
    """
    return denoising_loss(fake, x_g, sigma, noise, labels, augment_labels)


@dataclass(frozen=True)
class Settings(AugmentSettings):
    """Diff-Instruct's settings, named after the authors' flags where they have one.

    sigma_init (`--init_sigma`; the code's default is 1e-3, the README's command and the paper use
    1.0), the log-normal (P_mean, P_std) of both losses (`DI_EDMLoss` defaults), loss_scale (`--ls`,
    the generator loss), fake_loss_scale (`--sgls`), EDM augmentation of the fake-net loss
    (`--augment`, default 0.12), and generator_loss_dropout: both networks in train mode with shared
    dropout masks inside the generator loss (the authors' `gloss`); False puts both in eval mode.
    """

    sigma_init: float = 1.0
    P_mean: float = -1.2
    P_std: float = 1.2
    loss_scale: float = 1.0
    fake_loss_scale: float = 1.0
    generator_loss_dropout: bool = True
    augment_p: float = 0.12

    def validate(self, method: str = NAME) -> None:
        check_number(method, "sigma_init", self.sigma_init, low=0, low_open=True)
        check_number(method, "P_mean", self.P_mean)
        check_number(method, "P_std", self.P_std, low=0, low_open=True)
        check_number(method, "loss_scale", self.loss_scale, low=0, low_open=True)
        check_number(method, "fake_loss_scale", self.fake_loss_scale, low=0, low_open=True)
        if not isinstance(self.generator_loss_dropout, bool):
            raise ConfigError(f"method {method}: setting 'generator_loss_dropout' must be true or false, "
                              f"not {self.generator_loss_dropout!r}",
                              hint="set generator_loss_dropout to true (the authors') or false")
        self.validate_augment(method)


def fake_score_update(ctx: UpdateContext) -> LossOutput:
    """Fake-net step. Modes: generator eval, fake net train, teacher eval. Draw order (per sample):
    z [C,H,W]; sigma normal [1,1,1]; augmentation (augment_p > 0 only); noise [C,H,W] (the authors')."""
    s: Settings = ctx.settings
    ctx.nets["teacher"].eval()
    fake = ctx.nets["fake_score"]
    labels = labels_of(ctx, NAME)
    x_g = fake_images(ctx, labels)
    fake.train()
    d = ctx.draws
    sigma = lognormal_sigma(d.randn(1, 1, 1), s.P_mean, s.P_std)
    x_aug, augment_labels = augment(x_g, d, s)
    noise = d.randn(*ctx.img_shape)
    loss = fake_score_loss(fake, x_aug, sigma, noise, labels, augment_labels)
    return LossOutput(loss, terms={"fake_score": loss}, scale=s.fake_loss_scale)


def generator_update(ctx: UpdateContext) -> LossOutput:
    """Generator step, generator in train mode. Inside the loss the teacher and the fake net are in train
    mode with shared dropout masks (generator_loss_dropout, the authors' `gloss`), then back in eval.
    Draw order (per sample): z [C,H,W]; sigma normal [1,1,1]; noise [C,H,W] (the authors')."""
    s: Settings = ctx.settings
    labels = labels_of(ctx, NAME)
    generator, teacher, fake = ctx.nets["generator"], ctx.nets["teacher"], ctx.nets["fake_score"]
    generator.train()
    d = ctx.draws
    x_g = generate_images(generator, d.randn(*ctx.img_shape), labels, s.sigma_init)
    sigma = lognormal_sigma(d.randn(1, 1, 1), s.P_mean, s.P_std)
    noise = d.randn(*ctx.img_shape)
    teacher.train(s.generator_loss_dropout)
    fake.train(s.generator_loss_dropout)
    try:
        loss = generator_loss(teacher, fake, x_g, sigma, noise, labels, share_dropout=True)
    finally:
        teacher.eval()
        fake.eval()
    return LossOutput(loss, terms={"generator": loss}, scale=s.loss_scale)


def _phases(settings: Settings) -> tuple[Phase, ...]:
    return (Phase("alternate", ("fake_score", "generator")),)


DIFF_INSTRUCT = Method(
    name=NAME,
    version="1.0.0",
    paper="Diff-Instruct: A Universal Approach for Transferring Knowledge From Pre-trained Diffusion Models "
          "(Luo et al., NeurIPS 2023; arXiv:2305.18455)",
    description="Data-free one-step distillation: a fake-score step, then the Integral-KL generator step "
                "sum (f_psi - f_phi)(x_t) * x_g.",
    networks=(NetworkSpec("generator", init="teacher", ema=True), NetworkSpec("fake_score", init="teacher")),
    settings=Settings,
    updates=(Update("fake_score", "fake_score", fake_score_update),
             Update("generator", "generator", generator_update)),
    phases=_phases,
)
