"""EDM's denoising loss (Karras et al. 2022) as a method, and the EDM pieces SiD and SiDA build on.

The `edm` method trains a denoiser from scratch on the suite's images (the embedded suites'
teachers). Its loss, `denoising_loss`, is also the fake score network's loss in SiD and SiDA, so it
is written once, here. Every random number is an argument; the update draws them from `ctx.draws`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sidbench.data.augment import AugmentPipe
from sidbench.errors import ConfigError
from sidbench.methods.base import Draws, LossOutput, Method, NetworkSpec, Phase, Update, UpdateContext
from sidbench.methods.settings import check_number

# --- networks -------------------------------------------------------------------------------------


def unwrap(net: torch.nn.Module) -> torch.nn.Module:
    """The network itself under a DistributedDataParallel wrapper (for attributes and encoder reads)."""
    return net.module if isinstance(net, torch.nn.parallel.DistributedDataParallel) else net


def augment_dim(net: torch.nn.Module) -> int:
    """Width of the network's augment-label input (EDM's `map_augment`), 0 when it has none."""
    layer = getattr(getattr(unwrap(net), "model", None), "map_augment", None)
    return 0 if layer is None else int(layer.in_features)


def zero_augment_labels(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """Zero augment labels [b, augment_dim] ("not augmented") for a net with an augment layer, else None.

    The authors pass `torch.zeros(b, 9)` to every call that sees un-augmented images; a zero
    label adds exactly nothing (the layer has no bias), and a net without the layer ignores it.
    """
    dim = augment_dim(net)
    return torch.zeros(x.shape[0], dim, device=x.device, dtype=x.dtype) if dim else None


def sigma_data(net: torch.nn.Module) -> float:
    return float(getattr(unwrap(net), "sigma_data", 0.5))


# --- pure pieces ----------------------------------------------------------------------------------


def loss_weight(sigma: torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_d^2) / (sigma * sigma_d)^2: unit weight on the raw network output."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def lognormal_sigma(normal: torch.Tensor, P_mean: float = -1.2, P_std: float = 1.2) -> torch.Tensor:
    """EDM's training noise levels: sigma = exp(P_mean + P_std * n) for standard normal draws n."""
    return (normal * P_std + P_mean).exp()


def nan_free(*tensors: torch.Tensor) -> torch.Tensor:
    """[b] bool: True for the samples that contain no NaN in any of `tensors` (the authors' mask)."""
    keep = None
    for t in tensors:
        ok = ~torch.isnan(t).flatten(start_dim=1).any(dim=1)
        keep = ok if keep is None else keep & ok
    return keep


def zero_rows(t: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """`t` with the dropped samples set to 0; their gradient is exactly 0, as after the authors' indexing."""
    zero = torch.zeros((), dtype=t.dtype, device=t.device)
    return torch.where(keep.reshape(-1, *([1] * (t.ndim - 1))), t, zero)


def denoising_error(x: torch.Tensor, denoised: torch.Tensor, weight: torch.Tensor,
                    keep: torch.Tensor) -> torch.Tensor:
    """[b]: sum over C,H,W of weight * (denoised - x)^2, 0 for the samples not in `keep`."""
    x, denoised = zero_rows(x, keep), zero_rows(denoised, keep)
    return (weight * (denoised - x) ** 2).flatten(start_dim=1).sum(dim=1)


def denoising_loss(net: torch.nn.Module, x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor,
                   labels: torch.Tensor | None = None,
                   augment_labels: torch.Tensor | None = None) -> torch.Tensor:
    """EDM's loss per sample, [b]: sum_{C,H,W} lambda(sigma) * (D(x + sigma*noise, sigma, labels) - x)^2.

    `x` is the clean (already augmented) image, `sigma` [b,1,1,1], `noise` standard normal like x.
    A sample containing NaN (in x or in D) contributes 0, as in the SiD authors' fake-score loss;
    EDM itself has no such rule, but a NaN there only reaches the trainer's gradient guard.
    """
    denoised = net(x + sigma * noise, sigma, labels, augment_labels=augment_labels)
    keep = nan_free(x, denoised)
    return denoising_error(x, denoised, loss_weight(sigma, sigma_data(net)), keep)


# --- augmentation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AugmentSettings:
    """EDM's augmentation: probability p and the pipeline's six terms (EDM train.py `--augment` values)."""

    augment_p: float = 0.0
    augment_xflip: float = 1e8
    augment_yflip: float = 1.0
    augment_scale: float = 1.0
    augment_rotate_frac: float = 1.0
    augment_aniso: float = 1.0
    augment_translate_frac: float = 1.0

    def validate_augment(self, method: str) -> None:
        check_number(method, "augment_p", self.augment_p, low=0, high=1)
        for name in ("augment_xflip", "augment_yflip", "augment_scale", "augment_rotate_frac",
                     "augment_aniso", "augment_translate_frac"):
            check_number(method, name, getattr(self, name), low=0)


def augment_pipe(settings: AugmentSettings) -> AugmentPipe:
    """EDM's pipeline with the settings' probability and terms."""
    return AugmentPipe(p=settings.augment_p, xflip=settings.augment_xflip, yflip=settings.augment_yflip,
                       scale=settings.augment_scale, rotate_frac=settings.augment_rotate_frac,
                       aniso=settings.augment_aniso, translate_frac=settings.augment_translate_frac)


def augment(images: torch.Tensor, draws: Draws,
            settings: AugmentSettings) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(augmented images, [b, 9] augment labels), or (images, None) with no draws when augment_p is 0.

    With p = 0 the authors build no pipeline at all, so the networks get no augment labels.
    """
    if settings.augment_p == 0:
        return images, None
    return augment_pipe(settings)(images, draws)


# --- update-context checks ------------------------------------------------------------------------


def labels_of(ctx: UpdateContext, method: str) -> torch.Tensor | None:
    """The loader's labels; a conditional network given none would silently run unconditionally."""
    if ctx.label_dim and ctx.labels is None:
        raise ConfigError(f"method {method}: the network is conditional ({ctx.label_dim} classes) but the "
                          "trainer gave no labels",
                          hint="conditional runs take labels from the dataset loader")
    return ctx.labels if ctx.label_dim else None


def images_of(ctx: UpdateContext, method: str) -> torch.Tensor:
    if ctx.images is None:
        raise ConfigError(f"method {method} needs the suite's real images and got none",
                          hint="give the run a dataset (training.dataset) or use the suite's default")
    return ctx.images


# --- the method -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings(AugmentSettings):
    """EDM config F training: log-normal sigma (P_mean, P_std); label dropout for classifier-free guidance.

    Dropout inside the network is a per-network training setting of the recipe; keep the network's
    own `label_dropout` at 0 and use this one, whose draws are per sample and reproducible.
    """

    P_mean: float = -1.2
    P_std: float = 1.2
    label_dropout: float = 0.0

    def validate(self) -> None:
        check_number("edm", "P_mean", self.P_mean)
        check_number("edm", "P_std", self.P_std, low=0, low_open=True)
        check_number("edm", "label_dropout", self.label_dropout, low=0, high=1, high_open=True)
        self.validate_augment("edm")


def denoiser_update(ctx: UpdateContext) -> LossOutput:
    """One denoiser step. Draw order (per sample): sigma normal [1,1,1]; augmentation (p > 0 only);
    noise [C,H,W]; label-dropout uniform [1] (conditional and label_dropout > 0 only)."""
    s: Settings = ctx.settings
    net = ctx.nets["denoiser"]
    net.train()
    images = images_of(ctx, "edm")
    labels = labels_of(ctx, "edm")
    d = ctx.draws
    sigma = lognormal_sigma(d.randn(1, 1, 1), s.P_mean, s.P_std)
    x, augment_labels = augment(images, d, s)
    noise = d.randn(*ctx.img_shape)
    if labels is not None and s.label_dropout > 0:
        keep = (d.rand(1) >= s.label_dropout).to(labels.dtype)
        labels = labels * keep
    loss = denoising_loss(net, x, sigma, noise, labels, augment_labels)
    return LossOutput(loss, terms={"denoise": loss})


def _phases(settings: Settings) -> tuple[Phase, ...]:
    return (Phase("train", ("denoiser",)),)


EDM = Method(
    name="edm",
    version="1.0.0",
    paper="Elucidating the Design Space of Diffusion-Based Generative Models (Karras et al., NeurIPS 2022; "
          "arXiv:2206.00364)",
    description="EDM's denoising score matching from scratch: trains a teacher on the suite's images.",
    networks=(NetworkSpec("denoiser", init="scratch", ema=True),),
    settings=Settings,
    updates=(Update("denoiser", "denoiser", denoiser_update),),
    phases=_phases,
    needs_real_data=True,
    product="denoiser",
    product_role="teacher",
)
