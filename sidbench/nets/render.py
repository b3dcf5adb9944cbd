"""Seeds -> uint8 images: the one place that turns a seed list into pictures.

`generate` writes what `render_seeds` returns, and the metrics' on-the-fly generator
source evaluates it without touching the disk, so both see the same images. A batch
holding NaN or Inf is refused here: quantising it would silently give black pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sidbench import images as imgio
from sidbench.errors import CheckpointError, SidbenchError
from sidbench.nets.sampler import check_sampler_settings, edm_sampler, onestep_generate
from sidbench.nets.seeds import latents_and_labels


def nonfinite_weights(net: torch.nn.Module) -> tuple[int, str | None]:
    """(count, first name) of non-finite parameter values and NaN buffer values.

    Buffers may legitimately hold +-inf (masks), never NaN; parameters neither.
    """
    count, first = 0, None
    with torch.no_grad():
        named = [(n, p, False) for n, p in net.named_parameters()]
        named += [(n, b, True) for n, b in net.named_buffers()]
        for name, tensor, buffer in named:
            if not tensor.is_floating_point():
                continue
            bad = int(torch.isnan(tensor).sum() if buffer else (~torch.isfinite(tensor)).sum())
            if bad:
                count += bad
                first = first or name
    return count, first


def check_finite_weights(net: torch.nn.Module) -> None:
    """Refuse a network with NaN/Inf weights before any work (its images would all be NaN)."""
    count, first = nonfinite_weights(net)
    if count:
        raise CheckpointError(
            f"the network's weights hold {count} NaN/Inf value(s) (first in '{first}')",
            hint="the checkpoint is broken; use another one, e.g. an earlier snapshot",
        )


def _describe(sampler: str, settings: dict[str, Any]) -> str:
    if sampler == "onestep":
        return f"onestep sampler, sigma_init {settings['sigma_init']:g}"
    return (f"heun sampler, {settings['num_steps']} steps, sigma {settings['sigma_min']:g}.."
            f"{settings['sigma_max']:g}, rho {settings['rho']:g}, S_churn {settings['S_churn']:g}")


def check_finite_output(x: torch.Tensor, net: torch.nn.Module, seeds: Sequence[int], sampler: str,
                        settings: dict[str, Any]) -> None:
    """Stop with the cause when sampled images hold NaN/Inf (broken weights, or an overflow)."""
    finite = torch.isfinite(x.reshape(len(seeds), -1)).all(dim=1)
    if bool(finite.all()):
        return
    bad = [int(s) for s, ok in zip(seeds, finite.tolist(), strict=True) if not ok]
    where = f"{len(bad)} of {len(seeds)} images in a batch (first seed {bad[0]})"
    count, first = nonfinite_weights(net)
    if count:
        raise CheckpointError(
            f"NaN/Inf in {where}: the network's weights hold {count} NaN/Inf value(s) (first in '{first}')",
            hint="the checkpoint is broken; use another one, e.g. an earlier snapshot",
        )
    raise SidbenchError(
        f"NaN/Inf in {where} with finite weights ({_describe(sampler, settings)})",
        hint="the network overflowed: try the default sampler settings, or float32 instead of fp16",
    )


@torch.no_grad()
def render_seeds(net: torch.nn.Module, seeds: Sequence[int], sampler: str = "heun",
                 device: str | torch.device = "cpu", class_idx: int | None = None,
                 heun: dict[str, Any] | None = None, sigma_init: float = 2.5) -> np.ndarray:
    """uint8 [B, C, H, W] numpy images for `seeds`, each from its own generator.

    `heun` holds `edm_sampler`'s keyword settings (defaults for missing ones); `sigma_init`
    is the one-step generator's noise level. Both are checked, and so is the output.
    """
    settings = check_sampler_settings(sampler=sampler, sigma_init=sigma_init, **(heun or {}))
    shape = [net.img_channels, net.img_resolution, net.img_resolution]
    latents, labels, rng = latents_and_labels(seeds, shape, int(net.label_dim or 0), device, class_idx)
    if sampler == "heun":
        kwargs = {k: v for k, v in settings.items() if k != "sigma_init"}
        x = edm_sampler(net, latents, labels, randn_like=rng.randn_like, **kwargs)
    else:
        x = onestep_generate(net, latents, labels, sigma_init=settings["sigma_init"])
    check_finite_output(x, net, seeds, sampler, settings)
    return imgio.quantize(x).cpu().numpy()


__all__ = ["check_finite_output", "check_finite_weights", "nonfinite_weights", "render_seeds"]
