"""`example-kd`: one-step knowledge distillation, a complete minimal sidbench method.

The idea is Luhman & Luhman's (2021, arXiv:2101.02388): a one-step generator G(z) (a copy of the
teacher) is regressed onto the image the teacher's deterministic ODE sampler makes from the same
noise z, here EDM's Heun sampler with `num_steps` steps. The squared L2 loss and the Heun teacher
are this example's choices, not a reproduction of that paper's numbers.

The file has the three parts every method has: pure loss functions of explicit tensors (testable
against a formula written out in a test), an update that draws its randomness from `ctx.draws`
only and calls them, and one `Method` object that declares networks, settings and phases.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sidbench.methods.base import LossOutput, Method, NetworkSpec, Phase, Update, UpdateContext
from sidbench.methods.edm import unwrap, zero_augment_labels
from sidbench.methods.settings import check_number
from sidbench.nets.sampler import edm_sampler

# --- pure functions -------------------------------------------------------------------------------


def generate_images(generator: torch.nn.Module, z: torch.Tensor, labels: torch.Tensor | None,
                    sigma_init: float) -> torch.Tensor:
    """G(z) = generator(sigma_init * z, sigma_init, labels): the one-step generator, as `generate` runs it."""
    sigma = torch.full((z.shape[0], 1, 1, 1), float(sigma_init), dtype=z.dtype, device=z.device)
    return generator(sigma_init * z, sigma, labels, augment_labels=zero_augment_labels(generator, z))


@torch.no_grad()
def teacher_images(teacher: torch.nn.Module, z: torch.Tensor, labels: torch.Tensor | None, num_steps: int,
                   sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """The regression target [b, C, H, W]: EDM's deterministic Heun sampler from x_T = sigma_max * z."""
    out = edm_sampler(unwrap(teacher), z, labels, num_steps=num_steps, sigma_min=sigma_min,
                      sigma_max=sigma_max, rho=rho)
    return out.to(z.dtype)


def generator_loss(x_g: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample squared L2 distance, [b]: sum_{C,H,W} (x_g - target)^2; the target carries no gradient."""
    return (x_g - target.detach()).square().flatten(start_dim=1).sum(dim=1)


# --- settings ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """sigma_init: G's input noise level (80, the sampler's x_T, so G replaces the whole ODE solve);
    num_steps, sigma_min, sigma_max, rho: the teacher's Heun sampler (2 * num_steps - 1 teacher
    evaluations per image and step); loss_scale multiplies the loss."""

    sigma_init: float = 80.0
    num_steps: int = 8
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    loss_scale: float = 1.0

    def validate(self) -> None:
        check_number("example-kd", "sigma_init", self.sigma_init, low=0, low_open=True)
        check_number("example-kd", "num_steps", self.num_steps, low=2, integer=True)
        check_number("example-kd", "sigma_min", self.sigma_min, low=0, low_open=True)
        check_number("example-kd", "sigma_max", self.sigma_max, low=self.sigma_min, low_open=True)
        check_number("example-kd", "rho", self.rho, low=0, low_open=True)
        check_number("example-kd", "loss_scale", self.loss_scale, low=0, low_open=True)


# --- the update --------------------------------------------------------------------------------------


def generator_update(ctx: UpdateContext) -> LossOutput:
    """One generator step. Draw order (per sample): z [C, H, W]. Modes: teacher eval, generator train."""
    s: Settings = ctx.settings
    labels = ctx.labels if ctx.label_dim else None
    z = ctx.draws.randn(*ctx.img_shape)
    ctx.nets["teacher"].eval()
    target = teacher_images(ctx.nets["teacher"], z, labels, s.num_steps, s.sigma_min, s.sigma_max, s.rho)
    generator = ctx.nets["generator"]
    generator.train()
    loss = generator_loss(generate_images(generator, z, labels, s.sigma_init), target)
    return LossOutput(loss, terms={"kd": loss}, scale=s.loss_scale)


def _phases(settings: Settings) -> tuple[Phase, ...]:
    return (Phase("regress", ("generator",)),)


METHOD = Method(
    name="example-kd",
    version="0.1.0",
    paper="Knowledge Distillation in Iterative Generative Models for Improved Sampling Speed "
          "(Luhman & Luhman, 2021; arXiv:2101.02388)",
    description="A one-step generator regressed onto the teacher's Heun sample of the same noise.",
    networks=(NetworkSpec("generator", init="teacher", ema=True),),
    settings=Settings,
    updates=(Update("generator", "generator", generator_update),),
    phases=_phases,
    quickstart_recipe=str(Path(__file__).resolve().parents[1] / "recipes" / "example-kd-digits.yaml"),
)
