"""ADD-style distillation (Adversarial Diffusion Distillation, Sauer et al., 2023; arXiv:2311.17042).

No official training code exists: every setting here is recalled from the paper's text (tag
*[recalled]*) or is ours (tag *(ours)*), and the recipes say which. A student (a teacher copy) takes a
**real** image noised to one of N = 4 student noise levels, the largest meaning pure noise (zero
terminal SNR: the image is dropped there), and predicts the clean image x_s. Two losses train it:

- distillation: x_s re-noised to a teacher level sigma_t, the frozen teacher denoises it, and
  loss = c(sigma_t) * ||x_s - sg(teacher x0)||^2 (summed over C,H,W), weight 2.5 *[recalled]*;
- adversarial: hinge loss against a discriminator of a frozen feature network and small trainable heads
  conditioned on the class by projection (`add_features`), R1 penalty 1e-5 on real images *[recalled]*.

Each step: a discriminator update, then a student update (ours: ADD's order is not recalled). The
student samples at 1 step, G(80 z, 80), which `generate` / `eval --generator` do with the product's
`sigma_init`, or at all N levels (re-noise the prediction to the next level, denoise), which they do
with `--student-steps 4` from the levels the product's network.json records (`student_sigmas`).

Our mappings of the paper onto EDM teachers (ours): the student levels are SD's timesteps 999, 749,
499, 249 (ADD's four) mapped to EDM noise levels through SD 1.5's scaled-linear schedule (4.08, 1.61,
0.693), the top one replaced by EDM's sigma_max 80 with the image dropped; the teacher level is drawn
on EDM's rho-7 curve, t ~ U[0, teacher_tmax/1000) (ADD draws t uniformly from the teacher's
timesteps); c(t) uses the variance-preserving alpha_t = 1/sqrt(1 + sigma^2) and sigma_t^VP =
sigma * alpha_t of the EDM level; the distillation distance is the squared norm (a sum over pixels).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

from sidbench.errors import ConfigError
from sidbench.methods.base import LossOutput, Method, NetworkSpec, Phase, Update, UpdateContext
from sidbench.methods.edm import images_of, labels_of, zero_augment_labels
from sidbench.methods.settings import check_number
from sidbench.methods.sid import generator_sigma
from sidbench_baselines.add_features import FEATURE_NETWORKS, build_discriminator

NAME = "add"
WEIGHTINGS = ("exponential", "sds", "nfsd")
# SD's timesteps 999/749/499/249 as EDM noise levels (SD 1.5's scaled-linear schedule), top = sigma_max 80.
STUDENT_SIGMAS = (80.0, 4.08, 1.61, 0.693)
NFSD_SIGMA_MAX = 0.572  # SD's timestep 200 as an EDM noise level: NFSD's low-noise range is t < 200

__all__ = ["ADD", "Settings", "discriminator_losses", "distillation_loss", "distillation_weight",
           "generator_adversarial_loss", "hinge", "r1_penalty", "student_images", "student_input"]


# --- pure pieces ----------------------------------------------------------------------------------

def student_input(x_real: torch.Tensor, z: torch.Tensor, sigma: torch.Tensor,
                  pure_noise: torch.Tensor) -> torch.Tensor:
    """The student's input: x_real + sigma * z, or sigma * z alone where `pure_noise` [b] (the top level)."""
    keep = (~pure_noise).to(x_real.dtype).reshape(-1, *([1] * (x_real.ndim - 1)))
    return keep * x_real + sigma * z


def student_images(student: torch.nn.Module, x_in: torch.Tensor, sigma: torch.Tensor,
                   labels: torch.Tensor | None = None) -> torch.Tensor:
    """x_s = student(x_in, sigma, labels), zero augment labels: the student's clean-image prediction."""
    return student(x_in, sigma, labels, augment_labels=zero_augment_labels(student, x_in))


def distillation_weight(sigma: torch.Tensor, weighting: str = "exponential",
                        nfsd_sigma_max: float = NFSD_SIGMA_MAX) -> torch.Tensor:
    """c(t) of the teacher level `sigma` (EDM), with alpha = 1/sqrt(1 + sigma^2), s = sigma * alpha:

    - exponential (ADD's default *[recalled]*): c = alpha;
    - sds: c = alpha / (2 s) * w with SDS's w(t) = s^2, i.e. alpha * s / 2: the weight under which the
      gradient 2c (x_s - x0) of the distance equals SDS's w(t) (eps_hat - eps);
    - nfsd (ours, a stand-in): SDS's weight on NFSD's low-noise range sigma <= nfsd_sigma_max (SD's
      t < 200), 0 above. An unguided teacher has no null-prompt or negative-prompt prediction, so NFSD's
      t >= 200 term (eps(null) - eps(negative)) vanishes; what is left is its low-noise range.
    """
    alpha = (1 + sigma**2).rsqrt()
    if weighting == "exponential":
        return alpha
    s = sigma * alpha
    sds = alpha * s / 2
    if weighting == "sds":
        return sds
    if weighting == "nfsd":
        return torch.where(sigma <= nfsd_sigma_max, sds, torch.zeros_like(sds))
    raise ConfigError(f"unknown weighting {weighting!r}", hint=f"choose one of {', '.join(WEIGHTINGS)}")


def distillation_loss(teacher: torch.nn.Module, x_s: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor,
                      labels: torch.Tensor | None = None, weighting: str = "exponential",
                      nfsd_sigma_max: float = NFSD_SIGMA_MAX) -> torch.Tensor:
    """ADD's distillation loss per sample, [b], before its weight 2.5:

    x_t = x_s + sigma * noise; x0 = sg(teacher(x_t, sigma, labels)) (no_grad, zero augment labels);
    loss = c(sigma) * ||x_s - x0||^2, the squared norm summed over C,H,W as the paper writes it
    (`distillation_weight`), like SiD's and DMD's per-sample sums. (A mean over pixels made the term
    256x smaller on digits, where the hinge GAN term swamped it: FD 413 after 100 steps.) The
    gradient reaches the student only through the first x_s.
    """
    with torch.no_grad():
        x_t = (x_s + sigma * noise).detach()
        target = teacher(x_t, sigma, labels, augment_labels=zero_augment_labels(teacher, x_t))
    c = distillation_weight(sigma, weighting, nfsd_sigma_max).flatten()
    return c * (x_s - target).square().flatten(start_dim=1).sum(dim=1)


def hinge(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """[b]: the discriminator's hinge loss, mean over its logits: relu(1 - l) (real), relu(1 + l) (fake)."""
    return torch.relu(1 - logits if real else 1 + logits).flatten(start_dim=1).mean(dim=1)


def r1_penalty(discriminator: torch.nn.Module, x_real: torch.Tensor,
               labels: torch.Tensor | None = None) -> torch.Tensor:
    """[b]: ||grad_x D(x)||^2 over C,H,W at the real images, D(x) = the mean of the sample's logits; with
    a graph, so the penalty trains the heads (the recipe's r1_weight, 1e-5 *[recalled]*, multiplies it)."""
    x = x_real.detach().requires_grad_(True)
    score = discriminator(x, labels).flatten(start_dim=1).mean(dim=1)
    (grad,) = torch.autograd.grad(score.sum(), x, create_graph=True)
    return grad.square().flatten(start_dim=1).sum(dim=1)


def discriminator_losses(discriminator: torch.nn.Module, x_fake: torch.Tensor, x_real: torch.Tensor,
                         labels: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(real [b], fake [b], r1 [b]): hinge(D(x_real)), hinge(D(sg(x_fake))) and `r1_penalty` at x_real."""
    real = hinge(discriminator(x_real, labels), real=True)
    fake = hinge(discriminator(x_fake.detach(), labels), real=False)
    return real, fake, r1_penalty(discriminator, x_real, labels)


def generator_adversarial_loss(discriminator: torch.nn.Module, x_s: torch.Tensor,
                               labels: torch.Tensor | None = None) -> torch.Tensor:
    """[b]: the student's hinge-GAN loss, -mean over the logits of D(x_s) (gradient through x_s only)."""
    return -discriminator(x_s, labels).flatten(start_dim=1).mean(dim=1)


# --- settings -------------------------------------------------------------------------------------

def _floats(value: object) -> object:
    if isinstance(value, list | tuple) and all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                                                for v in value):
        return tuple(float(v) for v in value)
    return value


def _ints(value: object) -> object:
    if isinstance(value, list | tuple) and all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                                for v in value):
        return tuple(int(v) for v in value)
    return value


@dataclass(frozen=True)
class Settings:
    """ADD-style settings: *[recalled]* from the paper, or ours (see the module docstring).

    student_sigmas: the student's noise levels, largest first [recalled: N = 4; values ours];
    pure_noise_top: the largest level drops the image (zero terminal SNR) [recalled];
    distill_weight 2.5 [recalled], adv_weight 1 [recalled]; weighting c(t): exponential (default), sds,
    nfsd [recalled; nfsd's form ours]; teacher_tmax, sigma_min, sigma_max, rho: the teacher level's law
    (ours); r1_weight 1e-5 [recalled]; feature_network: teacher (the frozen teacher encoder at
    feature_sigma, ours) or dinov2 (the paper's ViT-S, from local feature_weights, read at
    feature_layers [recalled: several layers; indices ours]); head_channels (ours).
    """

    student_sigmas: tuple[float, ...] = STUDENT_SIGMAS
    pure_noise_top: bool = True
    distill_weight: float = 2.5
    adv_weight: float = 1.0
    weighting: str = "exponential"
    nfsd_sigma_max: float = NFSD_SIGMA_MAX
    teacher_tmax: int = 1000
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    r1_weight: float = 1e-5
    feature_network: str = "teacher"
    feature_weights: str | None = None
    feature_layers: tuple[int, ...] = (3, 6, 9, 12)
    feature_sigma: float = 0.5
    head_channels: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "student_sigmas", _floats(self.student_sigmas))
        object.__setattr__(self, "feature_layers", _ints(self.feature_layers))

    @property
    def sigma_init(self) -> float:
        """The one-step noise level: the largest student level (what the product records as sigma_init)."""
        return self.student_sigmas[0]

    def validate(self, method: str = NAME) -> None:
        levels = self.student_sigmas
        if not isinstance(levels, tuple) or not levels:
            raise ConfigError(f"method {method}: setting 'student_sigmas' must be a non-empty list of "
                              f"numbers, not {levels!r}",
                              hint="e.g. student_sigmas: [80.0, 4.08, 1.61, 0.693]")
        for i, v in enumerate(levels):
            check_number(method, f"student_sigmas[{i}]", v, low=0, low_open=True)
        if any(b >= a for a, b in zip(levels, levels[1:], strict=False)):
            raise ConfigError(f"method {method}: student_sigmas {list(levels)} must decrease strictly",
                              hint="list the student's noise levels from the largest (pure noise) down")
        for name in ("pure_noise_top",):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"method {method}: setting '{name}' must be true or false")
        check_number(method, "distill_weight", self.distill_weight, low=0)
        check_number(method, "adv_weight", self.adv_weight, low=0)
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"method {method}: weighting {self.weighting!r} is not one of "
                              f"{', '.join(WEIGHTINGS)}", hint="ADD's default is exponential")
        check_number(method, "nfsd_sigma_max", self.nfsd_sigma_max, low=0, low_open=True)
        check_number(method, "teacher_tmax", self.teacher_tmax, low=0, high=1000, low_open=True, integer=True)
        check_number(method, "sigma_min", self.sigma_min, low=0, low_open=True)
        check_number(method, "sigma_max", self.sigma_max, low=self.sigma_min, low_open=True)
        check_number(method, "rho", self.rho, low=0, low_open=True)
        check_number(method, "r1_weight", self.r1_weight, low=0)
        if self.feature_network not in FEATURE_NETWORKS:
            raise ConfigError(f"method {method}: feature_network {self.feature_network!r} is not one of "
                              f"{', '.join(FEATURE_NETWORKS)}",
                              hint="the default is the frozen teacher encoder")
        if self.feature_weights is not None and not isinstance(self.feature_weights, str):
            raise ConfigError(f"method {method}: feature_weights must be a folder path (or null)")
        if not isinstance(self.feature_layers, tuple) or not self.feature_layers:
            raise ConfigError(f"method {method}: feature_layers must be a non-empty list of whole numbers",
                              hint="e.g. feature_layers: [3, 6, 9, 12]")
        check_number(method, "feature_sigma", self.feature_sigma, low=0, low_open=True)
        check_number(method, "head_channels", self.head_channels, low=1, integer=True)


# --- updates --------------------------------------------------------------------------------------

def _student_batch(ctx: UpdateContext) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_in, sigma): draws a level index [1] and z [C,H,W] per sample and noises the real images."""
    s: Settings = ctx.settings
    real = images_of(ctx, NAME)
    levels = torch.tensor(s.student_sigmas, dtype=real.dtype, device=real.device)
    index = ctx.draws.randint(len(levels), 1).flatten()
    sigma = levels[index].reshape(-1, 1, 1, 1)
    z = ctx.draws.randn(*ctx.img_shape)
    pure = (index == 0) if s.pure_noise_top else torch.zeros_like(index, dtype=torch.bool)
    return student_input(real, z, sigma, pure), sigma


def discriminator_update(ctx: UpdateContext) -> LossOutput:
    """Discriminator step on the loader's real batch (their labels for the student's images too).

    Modes: student eval (no dropout), discriminator train (its feature network stays frozen in eval),
    teacher eval. Draw order (per sample): level index [1]; z [C,H,W]. Loss: hinge(real) + hinge(fake)
    + r1_weight * R1(real)."""
    s: Settings = ctx.settings
    ctx.nets["teacher"].eval()
    student, disc = ctx.nets["generator"], ctx.nets["discriminator"]
    labels = labels_of(ctx, NAME)
    x_in, sigma = _student_batch(ctx)
    student.eval()
    with torch.no_grad():
        x_s = student_images(student, x_in, sigma, labels)
    disc.train()
    real, fake, r1 = discriminator_losses(disc, x_s, images_of(ctx, NAME), labels)
    return LossOutput(real + fake + s.r1_weight * r1, terms={"d_real": real, "d_fake": fake, "r1": r1})


def generator_update(ctx: UpdateContext) -> LossOutput:
    """Student step: distill_weight * distillation + adv_weight * adversarial.

    Modes: student train, discriminator and teacher eval. Draw order (per sample): level index [1];
    z [C,H,W]; u [1,1,1] (the teacher level, t = u * teacher_tmax / 1000 on the rho curve); noise [C,H,W].
    """
    s: Settings = ctx.settings
    teacher, student, disc = ctx.nets["teacher"], ctx.nets["generator"], ctx.nets["discriminator"]
    teacher.eval()
    disc.eval()
    labels = labels_of(ctx, NAME)
    x_in, sigma = _student_batch(ctx)
    student.train()
    x_s = student_images(student, x_in, sigma, labels)
    sigma_t = generator_sigma(ctx.draws.rand(1, 1, 1), s.teacher_tmax, s.sigma_min, s.sigma_max, s.rho)
    noise = ctx.draws.randn(*ctx.img_shape)
    distill = distillation_loss(teacher, x_s, sigma_t, noise, labels, s.weighting, s.nfsd_sigma_max)
    adversarial = generator_adversarial_loss(disc, x_s, labels)
    return LossOutput(s.distill_weight * distill + s.adv_weight * adversarial,
                      terms={"distill": distill, "adversarial": adversarial})


def _phases(settings: Settings) -> tuple[Phase, ...]:
    return (Phase("alternate", ("discriminator", "generator")),)


ADD = Method(
    name=NAME,
    version="1.0.0",
    paper="Adversarial Diffusion Distillation (Sauer, Lorenz, Blattmann and Rombach, 2023; "
          "arXiv:2311.17042); no official training code: settings recalled from the paper",
    description="ADD-style: a teacher-initialised student on noised real images, a distillation loss "
                "to the teacher plus a hinge GAN with a frozen-feature discriminator; 1 or 4 steps.",
    networks=(NetworkSpec("generator", init="teacher", ema=True),
              NetworkSpec("discriminator", init="none", build=build_discriminator)),
    settings=Settings,
    updates=(Update("discriminator", "discriminator", discriminator_update),
             Update("generator", "generator", generator_update)),
    phases=_phases,
    needs_real_data=True,
)
