"""SiD-LSG: SiD with Long-and-Short classifier-free Guidance (Zhou et al., 2024; arXiv:2406.01561).

Data-free distillation of a text-to-image eps-prediction teacher (Stable Diffusion 1.5) into a
one-step generator, in the teacher's (latent) space, on prompts only:

- generator: a UNet copy evaluated once at t_init (625 of 1000) on x = sqrt(1 - abar_625) z, i.e.
  diffusers' add_noise(0, z, t_init), its eps turned into x0 (`generate_latents`); never guided;
- fake-net step: unweighted eps-MSE of the fake net's *guided* eps (kappa1 = `cfg_train_fake`) on
  x_t = add_noise(G(z), noise, t), t uniform on {tmin, ..., tmax - 1}; 10% of its prompts are
  replaced by "" (before G(z) is made) when kappa1 != 1 or kappa2 != 1, and only there;
- generator step: the SiD loss in latent space (scale 1, not 100) between the teacher's x0 at
  kappa4 = `cfg_eval_real` and the fake net's at kappa2 = `cfg_eval_fake`.

The losses are pure functions of explicit tensors, checked against the authors' code
(`training/sid_training_loop.py`, `training/sid_sd_util.py`) by tests/tools/compare_sid_lsg_authors.py.
Draw order per sample is part of the version: see each update's docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sidbench.errors import ConfigError
from sidbench.methods.base import LossOutput, Method, NetworkSpec, Phase, Update, UpdateContext
from sidbench.methods.edm import nan_free, unwrap
from sidbench.methods.settings import check_number
from sidbench.methods.sid import sid_terms
from sidbench.nets import ddpm
from sidbench.nets.eps_unet import one_step


def denoise(net: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
            uncond: torch.Tensor | None = None, kappa: float = 1.0, output: str = "x0") -> torch.Tensor:
    """A (possibly DDP-wrapped) EpsDenoiser's guided x0 or eps at integer steps t, through its forward."""
    return net(x_t, None, timesteps=t, text=cond, uncond=uncond, kappa=kappa, output=output)


def generate_latents(generator: torch.nn.Module, z: torch.Tensor, text: torch.Tensor,
                     t_init: int) -> torch.Tensor:
    """G(z, c) = x0 of the generator's (unguided) eps at t_init on sqrt(1 - abar_t_init) z."""
    return one_step(generator, z, text, t_init)


def fake_score_loss(fake: torch.nn.Module, x_g: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                    cond: torch.Tensor, uncond: torch.Tensor | None, kappa: float) -> torch.Tensor:
    """Per-sample sum_{C,H,W} (eps_guided(x_t) - noise)^2 with x_t = add_noise(x_g, noise, t); NaN rows 0."""
    x_t = ddpm.add_noise(unwrap(fake).alphas_cumprod, x_g, noise, t)
    eps = denoise(fake, x_t, t, cond, uncond, kappa, output="eps")
    keep = nan_free(eps)
    err = torch.where(keep.reshape(-1, 1, 1, 1), eps - noise, torch.zeros_like(eps))
    return err.square().flatten(start_dim=1).sum(dim=1)


def generator_loss(teacher: torch.nn.Module, fake: torch.nn.Module, x_g: torch.Tensor, t: torch.Tensor,
                   noise: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None, kappa_real: float,
                   kappa_fake: float, alpha: float = 1.0) -> torch.Tensor:
    """SiD's loss per sample in latent space: y_r = teacher x0 at kappa4, y_f = fake x0 at kappa2 on
    x_t = add_noise(x_g, noise, t); loss = sum (y_r - y_f)((y_r - x_g) - alpha (y_r - y_f)) / w,
    w = sg(mean |x_g - y_r|) floored at 1e-5; NaN samples give 0 (the authors drop them)."""
    abar = unwrap(teacher).alphas_cumprod
    x_t = ddpm.add_noise(abar, x_g, noise, t)
    y_fake = denoise(fake, x_t, t, cond, uncond, kappa_fake)
    y_real = denoise(teacher, x_t, t, cond, uncond, kappa_real)
    return sid_terms(x_g, y_real, y_fake, nan_free(x_g, y_real, y_fake), alpha)[0]


def drop_prompts(prompts: Sequence[str], u: torch.Tensor, p: float) -> list[str]:
    """Prompt j becomes "" when its uniform draw u_j < p (the authors' `torch.rand(b) < 0.1`)."""
    flags = (u.reshape(-1) < p).tolist()
    return ["" if flag else text for flag, text in zip(flags, prompts, strict=True)]


@dataclass(frozen=True)
class Settings:
    """SiD-LSG's settings, named after the authors' flags.

    t_init (`--init_timestep`), tmin / tmax (t ~ U{tmin..tmax-1}), alpha, the three guidance scales
    `cfg_train_fake` (kappa1), `cfg_eval_fake` (kappa2 = kappa3), `cfg_eval_real` (kappa4),
    prompt_dropout (the fake step's empty-prompt rate, used only when kappa1 or kappa2 != 1),
    loss_scale (`loss_scaling_G`) and fake_loss_scale (`loss_scaling`), both 1.
    """

    t_init: int = 625
    tmin: int = 20
    tmax: int = 980
    alpha: float = 1.0
    cfg_train_fake: float = 1.0
    cfg_eval_fake: float = 1.0
    cfg_eval_real: float = 1.0
    prompt_dropout: float = 0.1
    loss_scale: float = 1.0
    fake_loss_scale: float = 1.0

    def validate(self, method: str = "sid-lsg") -> None:
        check_number(method, "t_init", self.t_init, low=0, high=1000, high_open=True, integer=True)
        check_number(method, "tmin", self.tmin, low=0, high=1000, integer=True)
        check_number(method, "tmax", self.tmax, low=0, high=1000, integer=True)
        if self.tmin >= self.tmax:
            raise ConfigError(f"method {method}: tmin {self.tmin} must be below tmax {self.tmax}",
                              hint="t is drawn from {tmin, ..., tmax - 1}, e.g. tmin 20, tmax 980")
        check_number(method, "alpha", self.alpha)
        for name in ("cfg_train_fake", "cfg_eval_fake", "cfg_eval_real"):
            check_number(method, name, getattr(self, name), low=0)
        check_number(method, "prompt_dropout", self.prompt_dropout, low=0, high=1)
        check_number(method, "loss_scale", self.loss_scale, low=0, low_open=True)
        check_number(method, "fake_loss_scale", self.fake_loss_scale, low=0, low_open=True)

    @property
    def drops_prompts(self) -> bool:
        return self.cfg_train_fake != 1 or self.cfg_eval_fake != 1


def _conditioning(ctx: UpdateContext):
    cond = getattr(ctx, "conditioning", None)
    if cond is None or not hasattr(cond, "encode"):
        raise ConfigError("sid-lsg distils a text-to-image teacher; this run has no prompts",
                          hint="use a text-to-image suite (digits-t2i, coco2014-sd15)")
    return cond


def _timesteps(ctx: UpdateContext, s: Settings) -> torch.Tensor:
    return ctx.draws.randint(s.tmax - s.tmin).reshape(-1) + s.tmin


def fake_score_update(ctx: UpdateContext) -> LossOutput:
    """Fake-net step. Draw order (per sample): prompt index; dropout u [1]; z [C,H,W]; t; noise [C,H,W].

    The dropped-out prompts condition both G(z) (made without a graph, generator in eval mode) and
    the fake net, as in the authors' loop."""
    s: Settings = ctx.settings
    cond_src = _conditioning(ctx)
    prompts = cond_src.sample(ctx.draws)
    u = ctx.draws.rand(1)
    if s.drops_prompts:
        prompts = drop_prompts(prompts, u, s.prompt_dropout)
    text = cond_src.encode(prompts)
    uncond = cond_src.empty(len(prompts)) if s.cfg_train_fake != 1 else None
    z = ctx.draws.randn(*ctx.img_shape)
    generator = ctx.nets["generator"]
    generator.eval()
    with torch.no_grad():
        x_g = generate_latents(generator, z, text, s.t_init)
    t = _timesteps(ctx, s)
    noise = ctx.draws.randn(*ctx.img_shape)
    ctx.nets["fake_score"].train()
    loss = fake_score_loss(ctx.nets["fake_score"], x_g, t, noise, text, uncond, s.cfg_train_fake)
    return LossOutput(loss, terms={"fake_score": loss}, scale=s.fake_loss_scale)


def generator_update(ctx: UpdateContext) -> LossOutput:
    """Generator step. Draw order (per sample): prompt index; z [C,H,W]; t; noise [C,H,W]. No dropout."""
    s: Settings = ctx.settings
    cond_src = _conditioning(ctx)
    prompts = cond_src.sample(ctx.draws)
    text = cond_src.encode(prompts)
    guided = s.cfg_eval_real != 1 or s.cfg_eval_fake != 1
    uncond = cond_src.empty(len(prompts)) if guided else None
    ctx.nets["teacher"].eval()
    ctx.nets["fake_score"].eval()
    generator = ctx.nets["generator"]
    generator.train()
    z = ctx.draws.randn(*ctx.img_shape)
    x_g = generate_latents(generator, z, text, s.t_init)
    t = _timesteps(ctx, s)
    noise = ctx.draws.randn(*ctx.img_shape)
    loss = generator_loss(ctx.nets["teacher"], ctx.nets["fake_score"], x_g, t, noise, text, uncond,
                          s.cfg_eval_real, s.cfg_eval_fake, s.alpha)
    return LossOutput(loss, terms={"generator": loss}, scale=s.loss_scale)


def _phases(settings: Settings) -> tuple[Phase, ...]:
    return (Phase("alternate", ("fake_score", "generator")),)


SID_LSG = Method(
    name="sid-lsg",
    version="1.0.0",
    paper="Long and Short Guidance in Score identity Distillation for One-Step Text-to-Image Generation "
          "(Zhou, Wang, Zheng, Huang; arXiv:2406.01561)",
    description="Data-free one-step text-to-image distillation: SiD in latent space with long-and-short "
                "classifier-free guidance (kappa1 fake training, kappa2 fake eval, kappa4 teacher).",
    networks=(NetworkSpec("generator", init="teacher", ema=True), NetworkSpec("fake_score", init="teacher")),
    settings=Settings,
    updates=(Update("fake_score", "fake_score", fake_score_update),
             Update("generator", "generator", generator_update)),
    phases=_phases,
    product_role="t2i-generator",
)
