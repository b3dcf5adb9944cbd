"""DMD2: Improved Distribution Matching Distillation (Yin et al., NeurIPS 2024; arXiv:2405.14867).

DMD without the regression loss, with (1) the two time-scale update rule: the fake net updates every
iteration, the generator only when step % dfake_gen_update_ratio == 0 (5), before the fake net; and
(2) a GAN term whose discriminator is a small head on the fake UNet's bottleneck (the last encoder
block's output, class-conditional through the UNet): real and generated images are each noised at an
independent Karras-grid index U{0..999} ("diffusion GAN"), the head maps the features to one logit, and
the losses are softplus: generator softplus(-l(G(z))), weight 3e-3 (`--gen_cls_loss_weight`);
discriminator softplus(l(fake)) + softplus(-l(real)), weight 1e-2 (`--cls_loss_weight`) on the
fake-net step. G(z) = D(80 z, 80, label) with a random label; AdamW, warm-up, clipping and bf16 are
recipe settings. Written after tianweiy/DMD2 `main/edm/` (edm_guidance.py, train_edm.py) and checked
against it by tests/tools/compare_dmd2_authors.py.

The distribution-matching and fake-net losses are DMD's (`sidbench_baselines.dmd`, re-exported here);
the GAN terms are `gan_logits`, `gan_generator_loss` and `gan_discriminator_loss`. The head is built by
`NetworkSpec.build` around the fake net (`GANHeaded`), so it trains, checkpoints and resumes with it.
The authors' head, Conv4x4/s2, GroupNorm(32), SiLU, Conv4x4/s4, GroupNorm(32), SiLU, Conv1x1 on an 8x8
map (ImageNet 64), is built exactly at that size; on other bottleneck sizes s the second convolution's
kernel and stride become s/2 (and a 1x1 map, toy2d's MLP, gets 1x1 convolutions), our generalisation
that still ends at one logit per image; GroupNorm keeps 32 groups where each holds 8 or more channels
(`head_groups`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sidbench.errors import AssetError, ConfigError
from sidbench.methods.base import BuildInputs, LossOutput, Method, NetworkSpec, Phase, Update, UpdateContext
from sidbench.methods.edm import images_of, labels_of, unwrap
from sidbench.methods.settings import check_number
from sidbench_baselines.dmd import (
    GridSettings,
    _reduce,
    dm_generator_terms,
    fake_score_loss,
    fake_score_terms,
    generate_images,
    generator_loss,
    noise_at,
)

__all__ = ["DMD2", "GANHeaded", "Settings", "build_fake_score", "fake_score_loss", "gan_discriminator_loss",
           "gan_generator_loss", "gan_head", "gan_logits", "generate_images", "generator_loss"]


# --- the GAN head -------------------------------------------------------------------------------

def head_groups(channels: int) -> int:
    """GroupNorm groups: 32 when that leaves at least 8 channels a group (the authors' 768 / 32 = 24),
    else the most groups that do (or 1). The head's second norm sees a 1x1 map, where a group of one
    channel would normalise every value to 0 and make the logit a constant."""
    for groups in range(32, 0, -1):
        if channels % groups == 0 and channels // groups >= 8:
            return groups
    return 1


def gan_head(channels: int, size: int) -> nn.Sequential:
    """The classifier branch on a [channels, size, size] bottleneck map -> [b, 1, 1, 1] logits.

    At size 8 it is the authors' `cls_pred_branch` (with their 768 channels replaced by the UNet's).
    """
    if size >= 2:
        first = nn.Conv2d(channels, channels, kernel_size=4, stride=2, padding=1)
        mid = (size + 2 - 4) // 2 + 1
    else:
        first, mid = nn.Conv2d(channels, channels, kernel_size=1), size
    return nn.Sequential(
        first, nn.GroupNorm(head_groups(channels), channels), nn.SiLU(),
        nn.Conv2d(channels, channels, kernel_size=mid, stride=mid, padding=0),
        nn.GroupNorm(head_groups(channels), channels), nn.SiLU(),
        nn.Conv2d(channels, 1, kernel_size=1, stride=1, padding=0),
    )


class GANHeaded(nn.Module):
    """The fake score network with DMD2's GAN head: called like the EDM net it wraps (its denoiser);
    `logits(x, sigma, labels)` reads the bottleneck and runs the head. Other attributes (img_channels,
    label_dim, sigma_data, ...) are the wrapped net's."""

    def __init__(self, net: nn.Module, head: nn.Module):
        super().__init__()
        self.net = net
        self.head = head

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.net(*args, **kwargs)

    def encoder_features(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.net.encoder_features(*args, **kwargs)

    def logits(self, x: torch.Tensor, sigma: torch.Tensor,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """[b] logits: head(float32 bottleneck of the fake UNet at (x, sigma, labels)), the authors'
        `cls_pred_branch(fake_unet(x, sigma, label, return_bottleneck=True).float())`."""
        feats = self.net.encoder_features(x, sigma, labels).float()
        with torch.autocast(device_type=feats.device.type, enabled=False):  # the authors' head is fp32
            return self.head(feats).flatten()

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            net = self._modules.get("net")
            if net is None or name.startswith("__"):
                raise
            return getattr(net, name)


def bottleneck_shape(net: nn.Module, img_shape: tuple[int, int, int], label_dim: int) -> tuple[int, int]:
    """(channels, size) of the net's encoder output, from one forward pass without gradients."""
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(1, *img_shape)
            labels = torch.zeros(1, label_dim) if label_dim else None
            feats = net.encoder_features(x, torch.ones(1), labels)
    finally:
        net.train(was)
    if feats.ndim != 4 or feats.shape[2] != feats.shape[3]:
        raise ConfigError(f"the fake net's bottleneck has shape {tuple(feats.shape[1:])}, not [C, s, s]",
                          hint="DMD2's GAN head needs a square encoder map (SongUNet, DhariwalUNet, MLP)")
    return int(feats.shape[1]), int(feats.shape[2])


def _checkpoint_fake_score(path: str | os.PathLike) -> tuple[Path, dict[str, torch.Tensor]]:
    """The fake net's denoiser tensors in a checkpoint folder or a run folder's newest valid checkpoint
    (a GAN head, if it has one, is left out)."""
    from sidbench.train.checkpoint import CHECKPOINTS, STATE, newest_valid, read_state, read_tensors

    p = Path(path).expanduser()
    if (p / STATE).is_file():
        read_state(p)
        folder = p
    elif (p / CHECKPOINTS).is_dir() and (found := newest_valid(p)) is not None:
        folder = found[0]
    else:
        raise AssetError(f"init_fake_score {p} is not a checkpoint or a run folder with a valid checkpoint",
                         hint="give a checkpoints/step-XXXXXXXX folder or the run folder of a dmd2 run")
    rel = "networks/fake_score.safetensors"
    if not (folder / rel).is_file():
        raise AssetError(f"{folder} holds no fake_score network",
                         hint="give a checkpoint of a dmd or dmd2 run")
    tensors = read_tensors(folder, rel)
    if any(k.startswith("net.") for k in tensors):
        tensors = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
    return folder, tensors


def build_fake_score(base: nn.Module | None, inputs: BuildInputs) -> nn.Module:
    """The fake net: the teacher copy, its weights replaced from `init_fake_score` when set (the
    authors' `--ckpt_only_path` resume, head fresh), wrapped with a freshly initialised GAN head when
    `gan_classifier` is on (the trainer seeds this call)."""
    s: Settings = inputs.settings
    if base is None:
        raise ConfigError("DMD2's fake net starts from the teacher", hint="NetworkSpec init 'teacher'")
    if s.init_fake_score is not None:
        folder, tensors = _checkpoint_fake_score(s.init_fake_score)
        from sidbench.nets.native import check_state_dict

        check_state_dict(base, tensors, f"init_fake_score {folder}")
        with torch.no_grad():
            base.load_state_dict(tensors, strict=True)
    if not s.gan_classifier:
        return base
    channels, size = bottleneck_shape(base, inputs.img_shape, inputs.label_dim)
    return GANHeaded(base, gan_head(channels, size))


# --- pure GAN losses ------------------------------------------------------------------------------

def gan_logits(disc: nn.Module, x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor | None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
    """[b] logits of images `x` noised to `sigma` (x + sigma * noise; `noise` None: x as it is, the
    authors' non-diffusion GAN at the grid's first sigma) through the fake net's head."""
    x_t = x if noise is None else x + sigma * noise
    return unwrap(disc).logits(x_t, sigma, labels)


def gan_generator_loss(disc: nn.Module, x_g: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor | None,
                       labels: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """The generator's GAN term (`compute_generator_clean_cls_loss`): softplus(-l(x_g + sigma*noise)),
    gradients through x_g (the head is frozen in that step). "mean": the authors' batch mean; "none": [b]."""
    return _reduce(F.softplus(-gan_logits(disc, x_g, sigma, noise, labels)), reduction)


def gan_discriminator_loss(disc: nn.Module, x_fake: torch.Tensor, x_real: torch.Tensor,
                           sigma_fake: torch.Tensor, noise_fake: torch.Tensor | None,
                           sigma_real: torch.Tensor, noise_real: torch.Tensor | None,
                           labels_fake: torch.Tensor | None = None, labels_real: torch.Tensor | None = None,
                           reduction: str = "mean") -> torch.Tensor:
    """The discriminator's term (`compute_guidance_clean_cls_loss`): softplus(l(fake)) + softplus(-l(real)),
    both images detached and each noised at its own sigma and noise. "mean": the authors' batch mean;
    "none": [b]."""
    l_fake = gan_logits(disc, x_fake.detach(), sigma_fake, noise_fake, labels_fake)
    l_real = gan_logits(disc, x_real.detach(), sigma_real, noise_real, labels_real)
    return _reduce(F.softplus(l_fake) + F.softplus(-l_real), reduction)


# --- settings and updates -------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings(GridSettings):
    """DMD2's settings, named after its flags: the grid's; dfake_gen_update_ratio 5 (code default 1);
    gan_classifier (`--gan_classifier`), gen_cls_loss_weight 3e-3, cls_loss_weight 1e-2, diffusion_gan
    with diffusion_gan_max_timestep 1000 (GAN indices U{0..max-1}); init_fake_score: a checkpoint (or
    run folder) whose fake net starts this one (the 1.28 run resumes the no-GAN run's networks)."""

    dfake_gen_update_ratio: int = 5
    gan_classifier: bool = True
    gen_cls_loss_weight: float = 3e-3
    cls_loss_weight: float = 1e-2
    diffusion_gan: bool = True
    diffusion_gan_max_timestep: int = 1000
    init_fake_score: str | None = None

    def validate(self, method: str = "dmd2") -> None:
        self.validate_grid(method)
        check_number(method, "dfake_gen_update_ratio", self.dfake_gen_update_ratio, low=1, integer=True)
        for name in ("gan_classifier", "diffusion_gan"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"method {method}: setting '{name}' must be true or false, not "
                                  f"{getattr(self, name)!r}", hint=f"set {name}: true or false")
        check_number(method, "gen_cls_loss_weight", self.gen_cls_loss_weight, low=0)
        check_number(method, "cls_loss_weight", self.cls_loss_weight, low=0)
        check_number(method, "diffusion_gan_max_timestep", self.diffusion_gan_max_timestep, low=1,
                     high=self.num_train_timesteps, integer=True)
        value = self.init_fake_score
        if value is not None and (not isinstance(value, str | os.PathLike) or not str(value).strip()):
            raise ConfigError(f"method {method}: setting 'init_fake_score' must be a path (or null), "
                              f"not {value!r}",
                              hint="a checkpoint folder or a run folder")


def gan_noise(ctx: UpdateContext) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(sigma, noise) for one GAN input: index U{0..max-1} [1,1,1] then noise [C,H,W] with diffusion_gan,
    else the grid's first sigma and no noise (nothing drawn)."""
    s: Settings = ctx.settings
    if s.diffusion_gan:
        return noise_at(ctx, 0, s.diffusion_gan_max_timestep - 1)
    sigma = s.grid()[:1].reshape(1, 1, 1, 1).expand(ctx.micro_batch, 1, 1, 1).to(ctx.draws.device)
    return sigma, None


def generator_update(ctx: UpdateContext) -> LossOutput:
    """Generator step: dm + gen_cls_loss_weight * gan, per sample (gan only with gan_classifier).

    Draw order: z, label (conditional only), grid index U{min_step..max_step}, noise; then for the GAN
    term its index and noise (`gan_noise`)."""
    s: Settings = ctx.settings
    x_g, labels, dm = dm_generator_terms(ctx)
    if not s.gan_classifier:
        return LossOutput(dm, terms={"dm": dm})
    sigma, noise = gan_noise(ctx)
    gan = gan_generator_loss(ctx.nets["fake_score"], x_g, sigma, noise, labels, reduction="none")
    return LossOutput(dm + s.gen_cls_loss_weight * gan, terms={"dm": dm, "gan": gan})


def fake_score_update(ctx: UpdateContext) -> LossOutput:
    """Fake-net step: fake + cls_loss_weight * discriminator, per sample, on the loader's real images
    and their labels (gan_classifier only).

    Draw order: as `dmd.fake_score_terms` (z, label, grid index U{0..N-1}, noise); then the real image's
    GAN index and noise, then the generated image's."""
    s: Settings = ctx.settings
    x_g, labels, fake = fake_score_terms(ctx)
    if not s.gan_classifier:
        return LossOutput(fake, terms={"fake_score": fake})
    real = images_of(ctx, "dmd2")
    real_labels = labels_of(ctx, "dmd2")
    sigma_real, noise_real = gan_noise(ctx)
    sigma_fake, noise_fake = gan_noise(ctx)
    disc = gan_discriminator_loss(ctx.nets["fake_score"], x_g, real, sigma_fake, noise_fake, sigma_real,
                                  noise_real, labels, real_labels, reduction="none")
    return LossOutput(fake + s.cls_loss_weight * disc, terms={"fake_score": fake, "discriminator": disc})


def _phases(settings: Settings) -> tuple[Phase, ...]:
    return (Phase("alternate", ("generator", "fake_score"),
                  every={"generator": int(settings.dfake_gen_update_ratio)}),)


DMD2 = Method(
    name="dmd2",
    version="1.0.0",
    paper="Improved Distribution Matching Distillation for Fast Image Synthesis (Yin et al., NeurIPS 2024; "
          "arXiv:2405.14867)",
    description="Distribution matching with the two time-scale rule (generator every 5th step, first) and a "
                "diffusion-GAN head on the fake net's bottleneck; needs the real images.",
    # The generator copies the teacher: the fake net is an unmodified teacher copy when it is made, so this
    # is the authors' `deepcopy(fake_unet)` (copying the built fake net would copy its head too).
    networks=(NetworkSpec("fake_score", init="teacher", build=build_fake_score),
              NetworkSpec("generator", init="teacher")),
    settings=Settings,
    updates=(Update("generator", "generator", generator_update),
             Update("fake_score", "fake_score", fake_score_update)),
    phases=_phases,
    needs_real_data=True,
)
