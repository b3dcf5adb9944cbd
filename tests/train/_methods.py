"""Tiny methods and teachers for trainer tests (not a test module).

The trainer must not know any particular method, so it is tested with methods defined here:
`sidlike` (two networks, fake net first, then the generator through both networks' inputs, as
SiD does), `nanny` (a loss that turns non-finite on chosen steps) and `drawlog` (records
every sample's draws, to compare how batches are split). Registered once per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sidbench.methods.base import LossOutput, Method, NetworkSpec, Phase, Update, UpdateContext
from sidbench.registry import METHODS

TOY_TEACHER = {
    "class_name": "EDMPrecond",
    "init_kwargs": {"img_resolution": 1, "img_channels": 2, "label_dim": 0, "use_fp16": False, "sigma_min": 0,
                    "sigma_max": "inf", "sigma_data": 0.5, "model_type": "MLPDenoiser", "augment_dim": 0,
                    "hidden": 16, "num_layers": 2, "noise_channels": 8, "dropout": 0.0},
}

DIGITS_TEACHER = {
    "class_name": "EDMPrecond",
    "init_kwargs": {"img_resolution": 16, "img_channels": 1, "label_dim": 10, "use_fp16": False,
                    "sigma_min": 0, "sigma_max": "inf", "sigma_data": 0.5, "model_type": "SongUNet",
                    "augment_dim": 0, "model_channels": 8, "channel_mult": [1, 1], "num_blocks": 1,
                    "attn_resolutions": [], "dropout": 0.0, "embedding_type": "positional",
                    "encoder_type": "standard", "decoder_type": "standard", "channel_mult_noise": 1,
                    "resample_filter": [1, 1]},
}


def save_teacher(folder: Path, config: dict = TOY_TEACHER, seed: int = 0) -> Path:
    """A randomly initialised (non-trivial) teacher in a native folder."""
    from sidbench.nets.build import build_network
    from sidbench.nets.native import save_network

    torch.manual_seed(seed)
    net = build_network(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    save_network(net, config, folder, role="teacher")
    return folder


@dataclass(frozen=True)
class SidLikeSettings:
    sigma_init: float = 2.5
    alpha: float = 1.0
    poison_steps: tuple = ()  # steps at which the generator loss is NaN (NaN-guard tests)


def _generate(ctx: UpdateContext, grad: bool) -> torch.Tensor:
    s = ctx.settings
    z = ctx.draws.randn(*ctx.img_shape)
    g = ctx.nets["generator"]
    with torch.set_grad_enabled(grad):
        return g(s.sigma_init * z, torch.full([len(z)], s.sigma_init, device=z.device), ctx.labels)


def _fake_update(ctx: UpdateContext) -> LossOutput:
    x = _generate(ctx, grad=False)
    sigma = (ctx.draws.randn(1, 1, 1) * 1.2 - 1.2).exp()
    noise = ctx.draws.randn(*ctx.img_shape)
    fake = ctx.nets["fake"]
    d = fake(x + sigma * noise, sigma.flatten(), ctx.labels)
    weight = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    per = (weight * (d - x) ** 2).flatten(1).sum(1)
    return LossOutput(per, terms={"denoise": per})


def _generator_update(ctx: UpdateContext) -> LossOutput:
    s = ctx.settings
    x = _generate(ctx, grad=True)
    sigma = (ctx.draws.rand(1, 1, 1) * 2.0 + 0.05)
    noise = ctx.draws.randn(*ctx.img_shape)
    xt = x + sigma * noise
    y_r = ctx.nets["teacher"](xt, sigma.flatten(), ctx.labels)
    y_f = ctx.nets["fake"](xt, sigma.flatten(), ctx.labels)
    per = ((y_r - y_f) * ((y_r - x) - s.alpha * (y_r - y_f))).flatten(1).sum(1)
    if ctx.step in s.poison_steps:
        per = per * float("nan")
    return LossOutput(per, terms={"sid": per}, scale=10.0)


def _sidlike_phases(settings: SidLikeSettings) -> tuple[Phase, ...]:
    return (Phase("both", ("fake", "generator")),)


SIDLIKE = Method(
    name="test-sidlike", version="1.0.0", paper="test", description="SiD-shaped test method",
    networks=(NetworkSpec("generator", init="teacher", ema=True), NetworkSpec("fake", init="teacher")),
    settings=SidLikeSettings,
    updates=(Update("fake", "fake", _fake_update), Update("generator", "generator", _generator_update)),
    phases=_sidlike_phases,
)


@dataclass(frozen=True)
class DrawLogSettings:
    sigma_init: float = 2.5


DRAW_LOG: list[tuple[int, int, tuple[float, ...], tuple[float, ...]]] = []  # (step, j-independent) rows


def _drawlog_update(ctx: UpdateContext) -> LossOutput:
    """Records (step, draws, data) per sample; a loss on the network so there is a gradient."""
    n = ctx.draws.randn(*ctx.img_shape)
    u = ctx.draws.rand(1)
    data = ctx.images.flatten(1) if ctx.images is not None else torch.zeros(len(n), 0)
    for row in range(len(n)):
        DRAW_LOG.append((ctx.step, int(u[row].mul(1e9).item()), tuple(n[row].flatten().tolist()),
                         tuple(data[row].tolist())))
    d = ctx.nets["denoiser"](ctx.images + n, torch.ones(len(n)), ctx.labels) if ctx.images is not None \
        else ctx.nets["denoiser"](n, torch.ones(len(n)), ctx.labels)
    per = d.flatten(1).square().sum(1)
    return LossOutput(per)


DRAWLOG = Method(
    name="test-drawlog", version="1.0.0", paper="test", description="records its draws",
    networks=(NetworkSpec("denoiser", init="scratch", ema=True),),
    settings=DrawLogSettings,
    updates=(Update("denoiser", "denoiser", _drawlog_update),),
    phases=lambda s: (Phase("one", ("denoiser",)),),
    needs_real_data=True, product="denoiser", product_role="teacher",
)

for _m in (SIDLIKE, DRAWLOG):
    if _m.name not in METHODS._items:
        METHODS.register(_m.name, _m, source="tests")


def toy_recipe(teacher: Path, **training) -> dict:
    """A toy2d recipe of the SiD-like method: a few steps of a tiny MLP."""
    t = {"seed": 3, "batch": 8, "duration_kimg": 0.08, "teacher": str(teacher), "checkpoint_kimg": 0.032,
         "log_every_kimg": 0.016, "tensorboard": False,
         "networks": {"generator": {"lr": 1e-3, "betas": [0.0, 0.999], "ema_halflife_kimg": 0.02},
                      "fake": {"lr": 1e-3, "betas": [0.0, 0.999]}}}
    t.update(training)
    return {"name": "toy", "suite": "toy2d", "method": "test-sidlike", "training": t}
