"""Captions and seeds -> uint8 images of a text-to-image generator or teacher (COCO: caption i, seed i).

`onestep_t2i_renderer`: a SiD-LSG generator, G(z, c) at t_init, decoded by the teacher's decoder.
`ddim_t2i_renderer`: the teacher itself with deterministic DDIM (eta 0) and classifier-free guidance,
the usual way SD 1.5 is sampled (its "teacher row"). Image of seed s is made from seed s's own
generator (`sidbench.nets.seeds`) with caption `captions[s]`, so batching never changes an image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from sidbench import images as imgio
from sidbench.errors import ConfigError
from sidbench.nets import ddpm
from sidbench.nets.eps_unet import one_step
from sidbench.nets.render import check_finite_output
from sidbench.nets.seeds import StackedRandomGenerator
from sidbench.nets.t2i import T2ITeacher

Render = Callable[[Sequence[int]], torch.Tensor]


def check_captions_cover(captions: Sequence[str], seeds: Sequence[int],
                         where: str = "the caption list") -> None:
    """Image s is made from caption s: refuse seeds past the end of the list (callers: before any work)."""
    if not seeds:
        return
    if min(seeds) < 0:
        raise ConfigError(f"seed {min(seeds)} has no caption: caption s is rendered with seed s >= 0",
                          hint="use seeds from 0")
    top = max(seeds)
    if top >= len(captions):
        raise ConfigError(f"seed {top} has no caption: {where} holds {len(captions):,} (caption s is "
                          "rendered with seed s)",
                          hint=f"use seeds below {len(captions):,}, or a longer caption list")


def _captions_of(captions: Sequence[str], seeds: Sequence[int]) -> list[str]:
    check_captions_cover(captions, seeds)
    return [captions[int(s)] for s in seeds]


def _latents(teacher: T2ITeacher, seeds: Sequence[int], device: torch.device | str) -> torch.Tensor:
    return StackedRandomGenerator(device, seeds).randn([len(seeds), *teacher.latent_shape])


def onestep_t2i_renderer(generator: torch.nn.Module, teacher: T2ITeacher, captions: Sequence[str],
                         t_init: int, device: torch.device | str = "cpu") -> Render:
    """seeds -> uint8 [B, C, H, W] of the one-step generator (unguided, as SiD-LSG samples it)."""
    @torch.no_grad()
    def render(seeds: Sequence[int]) -> torch.Tensor:
        text = teacher.prompts.encode(_captions_of(captions, seeds)).to(device)
        x = teacher.decode(one_step(generator, _latents(teacher, seeds, device), text, t_init))
        check_finite_output(x, generator, seeds, "onestep", {"sigma_init": float(t_init)})
        return imgio.quantize(x).cpu()

    return render


def ddim_timesteps(num_steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """Evenly spaced steps from the last one down ("trailing"): 999, ..., for `num_steps` steps."""
    whole = isinstance(num_steps, int) and not isinstance(num_steps, bool)
    if not whole or not 1 <= num_steps <= num_train_timesteps:
        raise ConfigError(f"DDIM steps must be a whole number from 1 to {num_train_timesteps}, "
                          f"got {num_steps!r}", hint="e.g. --num-steps 25")
    step = num_train_timesteps / num_steps
    return [int(round(num_train_timesteps - 1 - i * step)) for i in range(num_steps)]


def ddim_nfe(num_steps: int, guidance: float) -> int:
    """UNet evaluations per image: a guided step runs the conditional and the unconditional branch."""
    return int(num_steps) * (1 if float(guidance) == 1.0 else 2)


@torch.no_grad()
def ddim_sample(teacher: T2ITeacher, z: torch.Tensor, text: torch.Tensor, num_steps: int,
                guidance: float) -> torch.Tensor:
    """Deterministic DDIM from x_999 = z with CFG at `guidance`; the final x0 (latents)."""
    net = teacher.denoiser
    abar = net.alphas_cumprod
    steps = ddim_timesteps(num_steps, net.num_train_timesteps)
    uncond = teacher.prompts.empty(z.shape[0]).to(z.device) if guidance != 1 else None
    x = z
    x0 = z
    for i, t in enumerate(steps):
        tt = torch.full((z.shape[0],), t, dtype=torch.long, device=z.device)
        eps = net.guided_eps(x, tt, text, uncond, guidance)
        x0 = ddpm.x0_from_eps(abar, x, eps, tt)
        if i + 1 < len(steps):
            prev = torch.full_like(tt, steps[i + 1])
            x = ddpm.add_noise(abar, x0, eps, prev)
    return x0


def ddim_t2i_renderer(teacher: T2ITeacher, captions: Sequence[str], num_steps: int, guidance: float,
                      device: torch.device | str = "cpu") -> Render:
    """seeds -> uint8 images of the teacher under DDIM with guidance (the teacher row)."""
    def render(seeds: Sequence[int]) -> torch.Tensor:
        text = teacher.prompts.encode(_captions_of(captions, seeds)).to(device)
        x = teacher.decode(ddim_sample(teacher, _latents(teacher, seeds, device), text, num_steps, guidance))
        check_finite_output(x, teacher.denoiser, seeds, "heun",
                            {"num_steps": num_steps, "sigma_min": 0, "sigma_max": 0, "rho": 0, "S_churn": 0})
        return imgio.quantize(x).cpu()

    return render
