"""DMD: One-step Diffusion with Distribution Matching Distillation (Yin et al., CVPR 2024; arXiv:2311.18828).

A one-step generator G(z) = generator(sigma_init * z, sigma_init, label) (sigma_init 80, a teacher
copy; a random one-hot label per sample) is trained against the teacher f_phi ("real" score) with a
fake score network f_psi (another teacher copy) that tracks the generator's distribution. Each
iteration: a generator step (the distribution-matching loss plus, in DMD v1, a regression loss on
precomputed teacher (noise, image) pairs), then a fake-net step (the denoising loss on generated
images). Noise levels come from a 1000-point Karras grid (`karras.py`).

The losses are pure functions of explicit tensors written after the DMD2 code (tianweiy/DMD2,
`main/edm/edm_guidance.py`, which also holds DMD's distribution-matching and fake losses; DMD v1's own
code was not released, so its regression term follows the paper and methods.md). They are checked
against that code by tests/tools/compare_dmd2_authors.py. Each takes `reduction`: "mean" returns the
authors' value (a mean over the batch and pixels), "none" a per-sample vector [b] whose mean is that
value. The updates return the "none" vectors: the trainer backpropagates `per_sample.sum() / B`, the
mean over the global batch, which is the authors' per-GPU mean averaged over GPUs by DDP.

Differences from the authors' loop, by design: (1) every update draws its own z, label and noise from
`ctx.draws`, so the fake net's step sees images of the freshly updated generator, not the ones the
generator step made; (2) the teacher's augment layer is "dropped" by never passing augment labels,
which is exactly the authors' `map_augment = None` (that layer has no bias); (3) modes follow the
trainer (the updated net in train mode, the others in eval), which equals the authors' all-train
mode at their dropout 0. The regression loss takes one pair per generator sample, its index drawn
with `ctx.draws.randint(N)`, so it does not depend on the number of processes.

DMD needs its pairs folder even to be validated: `sidbench pairs --suite digits --num-pairs 1000 --out
DIR`, then `sidbench validate dmd --set method_settings.pairs=DIR --set
method_settings.regression_distance=l2` (or lpips where its weights are present).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sidbench.errors import AssetError, ConfigError
from sidbench.methods.base import Draws, LossOutput, Method, NetworkSpec, Phase, Update, UpdateContext
from sidbench.methods.edm import sigma_data
from sidbench.methods.settings import check_number
from sidbench_baselines.karras import draw_index, grid_sigma, karras_grid

REDUCTIONS = ("mean", "none")
DISTANCES = ("lpips", "l2")


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, not {reduction!r}")
    return per_sample.mean() if reduction == "mean" else per_sample


def _pixel_mean(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(start_dim=1).mean(dim=1)


# --- pure losses --------------------------------------------------------------------------------

def generate_images(generator: torch.nn.Module, z: torch.Tensor, labels: torch.Tensor | None,
                    sigma_init: float = 80.0) -> torch.Tensor:
    """G(z) = generator(sigma_init * z, sigma_init, labels): the authors'
    `feedforward_model(80 z, 80, label)`."""
    sigma = torch.full((z.shape[0], 1, 1, 1), float(sigma_init), device=z.device, dtype=z.dtype)
    return generator(sigma_init * z, sigma, labels)


def generator_loss(teacher: torch.nn.Module, fake: torch.nn.Module, x_g: torch.Tensor, sigma: torch.Tensor,
                   noise: torch.Tensor, labels: torch.Tensor | None = None,
                   reduction: str = "mean") -> torch.Tensor:
    """The distribution-matching loss (`compute_distribution_matching_loss`).

    Without gradients: x_t = x_g + sigma * noise, p_real = x_g - f_phi(x_t), p_fake = x_g - f_psi(x_t),
    grad = nan_to_num((p_real - p_fake) / mean_{C,H,W}|p_real|) (= (f_psi - f_phi) / mean|x_g - f_phi|).
    Loss = 0.5 * MSE(x_g, sg(x_g - grad)), so d loss / d x_g = grad / (b*C*H*W). reduction "mean": the
    authors' global mean; "none": [b] means over C, H, W.
    """
    with torch.no_grad():
        x_t = x_g + sigma * noise
        p_real = x_g - teacher(x_t, sigma, labels)
        p_fake = x_g - fake(x_t, sigma, labels)
        weight = p_real.abs().mean(dim=list(range(1, x_g.ndim)), keepdim=True)
        grad = torch.nan_to_num((p_real - p_fake) / weight)
    per_sample = 0.5 * _pixel_mean((x_g.float() - (x_g - grad).detach().float()) ** 2)
    return _reduce(per_sample, reduction)


def fake_score_loss(fake: torch.nn.Module, x_g: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor,
                    labels: torch.Tensor | None = None, sigma_data: float = 0.5,
                    reduction: str = "mean") -> torch.Tensor:
    """The fake net's denoising loss (`compute_loss_fake`): no gradient reaches the generator.

    x = sg(x_g); mean of (sigma^-2 + 1/sigma_data^2) * (f_psi(x + sigma * noise, sigma) - x)^2, the weight
    being lambda(sigma) ("karras" weighting). reduction "mean": the authors' global mean; "none": [b].
    """
    x = x_g.detach()
    pred = fake(x + sigma * noise, sigma, labels)
    weight = sigma**-2 + 1.0 / sigma_data**2
    return _reduce(_pixel_mean(weight * (pred.float() - x.float()) ** 2), reduction)


def regression_loss(generated: torch.Tensor, target: torch.Tensor, distance: str = "lpips",
                    lpips: torch.nn.Module | None = None, reduction: str = "mean") -> torch.Tensor:
    """DMD's regression loss between G(noise of a pair) and the pair's teacher image.

    distance "lpips": LPIPS-VGG(generated, target) per sample (`lpips` a `lpips_vgg.LPIPSVGG`, which
    resizes to 224x224 as DMD does); "l2": mean_{C,H,W} (generated - target)^2, our fallback, used
    only when a recipe asks for it. The target carries no gradient. reduction "mean": the batch mean
    (the paper's expectation over pairs); "none": [b].
    """
    target = target.detach()
    if distance == "lpips":
        if lpips is None:
            raise ConfigError("regression_loss with distance lpips needs the LPIPS network",
                              hint="load it with sidbench_baselines.lpips_vgg.load_lpips_vgg")
        per_sample = lpips(generated, target).float()
    elif distance == "l2":
        per_sample = _pixel_mean((generated.float() - target.float()) ** 2)
    else:
        raise ConfigError(f"regression distance must be one of {', '.join(DISTANCES)}, not {distance!r}")
    return _reduce(per_sample, reduction)


# --- settings -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class GridSettings:
    """What DMD and DMD2 share, named after the DMD2 flags: the generator's noise level
    (`--conditioning_sigma` 80) and the Karras grid (`--num_train_timesteps` 1000, `--sigma_min`,
    `--sigma_max`, `--rho`) with the generator loss's index range int(p * 1000) for
    `--min_step_percent` 0.02 and `--max_step_percent` 0.98 (both ends included: U{20..980})."""

    sigma_init: float = 80.0
    num_train_timesteps: int = 1000
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    min_step_percent: float = 0.02
    max_step_percent: float = 0.98

    @property
    def min_step(self) -> int:
        return int(self.min_step_percent * self.num_train_timesteps)

    @property
    def max_step(self) -> int:
        """The highest generator-loss index: the authors' randint(min_step, min(max_step + 1, N)) - 1."""
        return min(int(self.max_step_percent * self.num_train_timesteps), self.num_train_timesteps - 1)

    def grid(self) -> torch.Tensor:
        return _grid(self.num_train_timesteps, self.sigma_min, self.sigma_max, self.rho)

    def validate_grid(self, method: str) -> None:
        check_number(method, "sigma_init", self.sigma_init, low=0, low_open=True)
        check_number(method, "num_train_timesteps", self.num_train_timesteps, low=2, integer=True)
        check_number(method, "sigma_min", self.sigma_min, low=0, low_open=True)
        check_number(method, "sigma_max", self.sigma_max, low=self.sigma_min, low_open=True)
        check_number(method, "rho", self.rho, low=0, low_open=True)
        check_number(method, "min_step_percent", self.min_step_percent, low=0, high=1)
        check_number(method, "max_step_percent", self.max_step_percent, low=self.min_step_percent, high=1)


@functools.lru_cache(maxsize=8)
def _grid(num: int, sigma_min: float, sigma_max: float, rho: float) -> torch.Tensor:
    return karras_grid(num, sigma_min, sigma_max, rho)


@dataclass(frozen=True)
class Settings(GridSettings):
    """DMD v1's settings: the grid's, plus the regression loss on precomputed pairs.

    pairs: a folder made by `sidbench pairs` (noise at sigma_max = sigma_init, the teacher's Heun
    images). regression_weight 0.25 (0.5 on CIFAR-10 uncond) *[secondary]*; 0 turns the term off.
    regression_distance: lpips (LPIPS-VGG at lpips_resolution 224, from lpips_weights /
    vgg16_weights given locally, see `lpips_vgg.load_lpips_vgg`) or l2 (our fallback: say so in the
    recipe; the choice is part of the settings, so of the config hash and every result record).
    """

    pairs: str | None = None
    regression_weight: float = 0.25
    regression_distance: str = "lpips"
    lpips_weights: str | None = None
    vgg16_weights: str | None = None
    lpips_resolution: int = 224

    def validate(self, method: str = "dmd") -> None:
        self.validate_grid(method)
        check_number(method, "regression_weight", self.regression_weight, low=0)
        if self.regression_distance not in DISTANCES:
            raise ConfigError(f"method {method}: setting 'regression_distance' must be one of "
                              f"{', '.join(DISTANCES)}, not {self.regression_distance!r}",
                              hint="lpips (DMD's) or l2 (a fallback when no LPIPS weights are available)")
        check_number(method, "lpips_resolution", self.lpips_resolution, low=1, integer=True)
        for name in ("pairs", "lpips_weights", "vgg16_weights"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str | os.PathLike) or not str(value).strip()):
                raise ConfigError(f"method {method}: setting '{name}' must be a path (or null), "
                                  f"not {value!r}", hint=f"set {name} to a file or folder")
        if self.regression_weight > 0 and self.pairs is None:
            raise ConfigError(f"method {method}: the regression loss needs precomputed teacher pairs, and "
                              "method_settings.pairs is not set",
                              hint="make them with `sidbench pairs --suite SUITE --num-pairs N --out DIR` "
                                   "and set method_settings.pairs=DIR (or regression_weight=0 for no "
                                   "regression term)")


# --- cached inputs: the pairs and the LPIPS network -----------------------------------------------

@functools.lru_cache(maxsize=4)
def _read_pairs(path: str, mtime_ns: int) -> Any:
    from sidbench.generation.pairs import read_pairs

    return read_pairs(path)


def load_pairs(path: str | os.PathLike) -> Any:
    """The `PairSet` of a pairs folder, read once per process (cached by path and manifest time)."""
    from sidbench.generation.pairs import MANIFEST

    folder = Path(path).expanduser().resolve()
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise AssetError(f"DMD pairs folder {folder} has no {MANIFEST}",
                         hint="make it with `sidbench pairs --suite SUITE --num-pairs N --out DIR`")
    return _read_pairs(str(folder), manifest.stat().st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _lpips(lpips_weights: str | None, vgg16_weights: str | None, resolution: int) -> torch.nn.Module:
    from sidbench_baselines.lpips_vgg import load_lpips_vgg

    return load_lpips_vgg(lpips_weights, vgg16_weights, resolution)


def lpips_network(settings: Settings, device: torch.device) -> torch.nn.Module | None:
    """The frozen LPIPS-VGG the settings name (None for the l2 distance), on `device`."""
    if settings.regression_distance != "lpips":
        return None
    return _lpips(settings.lpips_weights, settings.vgg16_weights, settings.lpips_resolution).to(device)


def check_pairs(pairs: Any, ctx: UpdateContext, sigma_init: float) -> None:
    """The pairs fit this run: image shape, labels, and noise at the generator's sigma_init."""
    shape = tuple(pairs.image.shape[1:])
    if shape != tuple(ctx.img_shape):
        raise AssetError(f"the DMD pairs hold images of shape {shape}, the networks make "
                         f"{tuple(ctx.img_shape)}",
                         hint="make the pairs with this suite's teacher (`sidbench pairs --suite SUITE`)")
    have = 0 if pairs.labels is None else int(pairs.labels.shape[1])
    if have != ctx.label_dim:
        raise AssetError(f"the DMD pairs have {have} classes, the networks {ctx.label_dim}",
                         hint="make the pairs with this suite's teacher")
    if abs(pairs.sigma_max - sigma_init) > 1e-6 * sigma_init:
        raise AssetError(f"the DMD pairs' noise is at sigma_max {pairs.sigma_max:g}, the generator's input "
                         f"at sigma_init {sigma_init:g}",
                         hint=f"make the pairs with --sigma-max {sigma_init:g}, or set sigma_init to theirs")


# --- updates --------------------------------------------------------------------------------------

def random_labels(draws: Draws, label_dim: int) -> torch.Tensor | None:
    """One-hot labels [b, label_dim] uniform over the classes (the authors' `eye[randint(label_dim)]`),
    None for an unconditional network (and then nothing is drawn)."""
    if not label_dim:
        return None
    return F.one_hot(draws.randint(label_dim).long(), label_dim).to(torch.float32)


def generator_batch(ctx: UpdateContext, grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x_g, labels): G(z) for z [C,H,W] then a random label, both drawn in that order; with a graph
    only when `grad` (the generator's own step)."""
    z = ctx.draws.randn(*ctx.img_shape)
    labels = random_labels(ctx.draws, ctx.label_dim)
    with torch.set_grad_enabled(grad):
        x_g = generate_images(ctx.nets["generator"], z, labels, ctx.settings.sigma_init)
    return x_g, labels


def noise_at(ctx: UpdateContext, low: int, high: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma [b,1,1,1], noise [C,H,W]): a grid index U{low..high} [1,1,1], then standard noise."""
    sigma = grid_sigma(draw_index(ctx.draws, low, high), ctx.settings.grid())
    return sigma, ctx.draws.randn(*ctx.img_shape)


def dm_generator_terms(ctx: UpdateContext) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(x_g, labels, dm [b]): the generator's images and its distribution-matching loss per sample.

    Draw order: z, label (conditional only), grid index U{min_step..max_step}, noise."""
    s: GridSettings = ctx.settings
    x_g, labels = generator_batch(ctx, grad=True)
    sigma, noise = noise_at(ctx, s.min_step, s.max_step)
    dm = generator_loss(ctx.nets["teacher"], ctx.nets["fake_score"], x_g, sigma, noise, labels,
                        reduction="none")
    return x_g, labels, dm


def generator_update(ctx: UpdateContext) -> LossOutput:
    """Generator step: dm + regression_weight * regression, per sample.

    Draw order: as `dm_generator_terms`, then (regression_weight > 0) one pair index U{0..N-1} [1]."""
    s: Settings = ctx.settings
    _, _, dm = dm_generator_terms(ctx)
    terms = {"dm": dm}
    per_sample = dm
    if s.regression_weight > 0:
        pairs = load_pairs(s.pairs)
        check_pairs(pairs, ctx, s.sigma_init)
        j = ctx.draws.randint(len(pairs)).long().cpu()
        device = dm.device
        noise = pairs.noise[j].to(device)
        labels = pairs.labels[j].to(device) if pairs.labels is not None else None
        sigma = torch.full((len(j), 1, 1, 1), float(s.sigma_init), device=device)
        generated = ctx.nets["generator"](noise, sigma, labels)
        reg = regression_loss(generated, pairs.image[j].to(device), s.regression_distance,
                              lpips_network(s, device), reduction="none")
        terms["regression"] = reg
        per_sample = dm + s.regression_weight * reg
    return LossOutput(per_sample, terms=terms)


def fake_score_terms(ctx: UpdateContext) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(x_g, labels, fake [b]): generated images (no graph) and the fake net's loss per sample.

    Draw order: z, label (conditional only), grid index U{0..N-1}, noise."""
    s: GridSettings = ctx.settings
    x_g, labels = generator_batch(ctx, grad=False)
    sigma, noise = noise_at(ctx, 0, s.num_train_timesteps - 1)
    fake = ctx.nets["fake_score"]
    loss = fake_score_loss(fake, x_g, sigma, noise, labels, sigma_data(fake), reduction="none")
    return x_g, labels, loss


def fake_score_update(ctx: UpdateContext) -> LossOutput:
    """Fake-net step: its denoising loss on fresh generated images; draw order in `fake_score_terms`."""
    loss = fake_score_terms(ctx)[2]
    return LossOutput(loss, terms={"fake_score": loss})


def _phases(settings: Settings) -> tuple[Phase, ...]:
    return (Phase("alternate", ("generator", "fake_score")),)


DMD = Method(
    name="dmd",
    version="1.0.0",
    paper="One-step Diffusion with Distribution Matching Distillation (Yin et al., CVPR 2024; "
          "arXiv:2311.18828)",
    description="Distribution matching (fake minus real score) plus a regression loss on precomputed teacher "
                "pairs; one generator step, then one fake-net step.",
    networks=(NetworkSpec("fake_score", init="teacher"), NetworkSpec("generator", init="fake_score")),
    settings=Settings,
    updates=(Update("generator", "generator", generator_update),
             Update("fake_score", "fake_score", fake_score_update)),
    phases=_phases,
)
