"""Text-to-image generation: caption s with seed s, into the same resumable PNG folder / zip as EDM's.

Two samplers (`sidbench.nets.t2i_render`): a SiD-LSG generator, one unguided step at its
recorded t_init, decoded by its teacher's decoder ("onestep"); or the teacher itself with
deterministic DDIM and classifier-free guidance ("ddim", the teacher row). The images depend on
the network, the teacher (prompt encoder, decoder) and the captions, so the manifest records the
teacher's sha256 and the captions' sha256 next to t_init or steps/guidance: an output is resumed or
extended only with all of them unchanged.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sidbench.data.captions import captions_sha256
from sidbench.devices import parse_device
from sidbench.errors import ConfigError
from sidbench.generation.manifest import build_t2i_manifest
from sidbench.generation.run import Render, write_images
from sidbench.generation.summary import GenerateSummary
from sidbench.nets.render import check_finite_weights
from sidbench.nets.seeds import parse_seeds
from sidbench.nets.t2i import T2ITeacher
from sidbench.nets.t2i_render import check_captions_cover, ddim_nfe


def check_guidance(guidance: Any, option: str = "--guidance") -> float:
    """A classifier-free guidance scale: a finite number >= 0 (1: the conditional model alone)."""
    if isinstance(guidance, bool) or not isinstance(guidance, numbers.Real) or not math.isfinite(guidance) \
            or guidance < 0:
        raise ConfigError(f"{option} {guidance!r} must be a finite number >= 0",
                          hint="1 is no guidance; the digits-t2i teacher row uses 2, SD usually 7.5")
    return float(guidance)


@dataclass
class T2IPlan:
    """How text-to-image images are made: a one-step `generator` at `t_init`, else the `teacher` under
    DDIM with `num_steps` and `guidance`. `captions_info` (path, sha256, ...) identifies the list in the
    manifest; by default its sha256."""

    teacher: T2ITeacher
    captions: Sequence[str]
    generator: torch.nn.Module | None = None
    t_init: int | None = None
    num_steps: int = 25
    guidance: float = 2.0
    captions_info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from sidbench.nets.t2i_render import ddim_timesteps

        if not self.captions:
            raise ConfigError("the caption list is empty", hint="give a captions file, one caption per line")
        if self.generator is not None:
            t = self.t_init
            if isinstance(t, bool) or not isinstance(t, numbers.Integral) or not 0 <= t < 1000:
                raise ConfigError(f"t_init {t!r} must be a whole DDPM step in [0, 1000)",
                                  hint="a SiD-LSG generator records its t_init (625) in network.json")
            self.t_init = int(t)
        else:
            ddim_timesteps(self.num_steps, self.teacher.denoiser.num_train_timesteps)  # checks the count
            self.guidance = check_guidance(self.guidance)
        self.captions_info = {"sha256": captions_sha256(self.captions), **self.captions_info}

    @property
    def sampler(self) -> str:
        return "onestep" if self.generator is not None else "ddim"

    @property
    def network(self) -> torch.nn.Module:
        """The network whose weights are fingerprinted: the generator, else the teacher's denoiser."""
        return self.generator if self.generator is not None else self.teacher.denoiser

    @property
    def nfe(self) -> int:
        """Network evaluations per image (a guided DDIM step runs the conditional and unconditional)."""
        return 1 if self.generator is not None else ddim_nfe(self.num_steps, self.guidance)

    def settings(self, device: torch.device) -> dict[str, Any]:
        """What the manifest compares: everything the images depend on besides the network's weights."""
        out: dict[str, Any] = {"sampler": self.sampler, "latent_shape": list(self.teacher.latent_shape),
                               "teacher_sha256": self.teacher.info.get("sha256"),
                               "captions_sha256": self.captions_info["sha256"], "device_type": device.type}
        if self.generator is not None:
            out.update({"t_init": self.t_init, "guidance": None})
        else:
            out.update({"num_steps": self.num_steps, "guidance": self.guidance, "eta": 0.0,
                        "timesteps": "trailing"})
        return out

    def describe(self) -> dict[str, Any]:
        """For records: the sampler, its numbers, the teacher and the caption list."""
        out: dict[str, Any] = {"sampler": self.sampler, "teacher": dict(self.teacher.info),
                               "captions": dict(self.captions_info)}
        if self.generator is not None:
            out["t_init"] = self.t_init
        else:
            out.update({"num_steps": self.num_steps, "guidance": self.guidance})
        return out

    def renderer(self, device: str | torch.device = "cpu") -> Render:
        """seeds -> uint8 [B, C, H, W], caption s with seed s (the networks must be on `device`)."""
        from sidbench.nets.t2i_render import ddim_t2i_renderer, onestep_t2i_renderer

        if self.generator is not None:
            return onestep_t2i_renderer(self.generator, self.teacher, self.captions, int(self.t_init), device)
        return ddim_t2i_renderer(self.teacher, self.captions, self.num_steps, self.guidance, device)


def _check_device(net: torch.nn.Module, device: torch.device) -> None:
    params = list(net.parameters())
    if params and params[0].device.type != device.type:
        raise ConfigError(f"the network is on {params[0].device}, not {device}",
                          hint="move it with net.to(device)")


def generate_t2i(plan: T2IPlan, out: str | os.PathLike, seeds: str | Sequence[int], *, batch_size: int = 64,
                 device: str | torch.device = "cpu", network_info: dict | None = None, progress: bool = True,
                 writers: int = 4) -> GenerateSummary:
    """Write `{seed:06d}.png` for every seed into `out` (folder or .zip), image s from caption s; resumable.

    The networks in `plan` must already be on `device`. Everything is checked (caption count,
    device, finite weights) before the output is touched.
    """
    seeds = parse_seeds(seeds)
    device = parse_device(device)
    check_captions_cover(plan.captions, seeds)
    for net in (plan.network, plan.teacher.prompts):
        _check_device(net, device)
    check_finite_weights(plan.network)
    manifest = build_t2i_manifest(plan.network, plan.settings(device),
                                  {**(network_info or {}), **plan.describe()})
    nets = [plan.network, plan.teacher.denoiser, plan.teacher.prompts]
    modes = [n.training for n in nets]
    for n in nets:
        n.eval()
    try:
        return write_images(plan.renderer(device), out, seeds, manifest, batch_size=batch_size,
                            writers=writers, progress=progress, nfe=plan.nfe)
    finally:
        for n, mode in zip(nets, modes, strict=True):
            n.train(mode)
