"""Multi-step sampling of a one-step student (ADD-style): denoise at N noise levels, re-noising between.

With the student's levels s_0 > s_1 > ... > s_{N-1} (`student_sigmas` in its network.json):

    x = G(s_0 * z, s_0, label);  for k = 1 .. N-1:  x = G(x + s_k * eps_k, s_k, label)

and the image is the last x. z and the class come from each image's own generator in EDM's order
(latent, then class), and eps_k [C, H, W] are drawn from it afterwards, one per step in step order,
as a stochastic sampler's extra noise is: image i depends on seed i alone, whatever the batch. One
step (N = 1) is exactly the one-step sampler at sigma_init = s_0, and costs 1 network call; N steps
cost N. `pick_levels` chooses N of the recorded levels (the first and the last always among them).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import numpy as np
import torch

from sidbench import images as imgio
from sidbench.errors import ConfigError
from sidbench.nets.native import check_student_sigmas
from sidbench.nets.render import check_finite_output
from sidbench.nets.sampler import augment_dim
from sidbench.nets.seeds import StackedRandomGenerator, latents_and_labels


def pick_levels(levels: Sequence[float], steps: int) -> tuple[float, ...]:
    """`steps` of the student's levels, evenly spread over the list: 1 -> the first, all -> all of them,
    otherwise indices round(k (L-1) / (steps-1)) for k = 0 .. steps-1 (first and last included)."""
    levels = check_student_sigmas(levels)
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ConfigError(f"student_steps {steps!r} must be a whole number >= 1",
                          hint="e.g. --student-steps 4")
    if steps > len(levels):
        raise ConfigError(f"student_steps {steps} asks for more steps than the {len(levels)} noise levels "
                          f"the student was trained at ({', '.join(f'{v:g}' for v in levels)})",
                          hint=f"use --student-steps 1 to {len(levels)}")
    if steps == 1:
        return levels[:1]
    last = len(levels) - 1
    return tuple(levels[math.floor(k * last / (steps - 1) + 0.5)] for k in range(steps))


@torch.no_grad()
def multistep_generate(generator: torch.nn.Module, z: torch.Tensor, class_labels: torch.Tensor | None,
                       student_sigmas: Sequence[float], rng: StackedRandomGenerator) -> torch.Tensor:
    """float64 images of the student at `student_sigmas` (module docstring); `rng` draws the re-noising."""
    levels = check_student_sigmas(student_sigmas)
    b = z.shape[0]
    kwargs = {}
    dim = augment_dim(generator)
    if dim:
        kwargs["augment_labels"] = torch.zeros([b, dim], device=z.device)
    x = z.to(torch.float64) * levels[0]
    for k, s in enumerate(levels):
        x_in = x if k == 0 else x + s * rng.randn(z.shape, device=z.device).to(torch.float64)
        sigma = torch.full([b], s, device=z.device)
        x = generator(x_in, sigma, class_labels, **kwargs).to(torch.float64)
    return x


@torch.no_grad()
def render_multistep(net: torch.nn.Module, seeds: Sequence[int], device: str | torch.device,
                     class_idx: int | None, student_sigmas: Sequence[float]) -> np.ndarray:
    """uint8 [B, C, H, W] images for `seeds` at the student's levels; NaN/Inf output refused."""
    levels = check_student_sigmas(student_sigmas)
    shape = [net.img_channels, net.img_resolution, net.img_resolution]
    latents, labels, rng = latents_and_labels(seeds, shape, int(net.label_dim or 0), device, class_idx)
    x = multistep_generate(net, latents, labels, levels, rng)
    check_finite_output(x, net, seeds, "onestep", {"sigma_init": levels[0]})
    return imgio.quantize(x).cpu().numpy()


def multistep_renderer(net: torch.nn.Module, student_sigmas: Sequence[float],
                       device: str | torch.device = "cpu", class_idx: int | None = None
                       ) -> Callable[[Sequence[int]], torch.Tensor]:
    """seeds -> uint8 torch images (what `eval --generator` streams), for `GeneratorImageSource`."""
    levels = check_student_sigmas(student_sigmas)

    def render(seeds: Sequence[int]) -> torch.Tensor:
        return torch.from_numpy(render_multistep(net, seeds, device, class_idx, levels))

    return render


__all__ = ["check_student_sigmas", "multistep_generate", "multistep_renderer", "pick_levels",
           "render_multistep"]
