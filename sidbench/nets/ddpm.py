"""The discrete DDPM schedule of latent-diffusion teachers (Stable Diffusion's 1000 steps), written out.

Stable Diffusion trains on x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps for integer t in [0, 1000)
with abar_t = prod_{s<=t} (1 - beta_s). The betas come from the scheduler config: "scaled_linear"
(SD 1.5 / 2.1: linspace(sqrt(b0), sqrt(b1), N)^2) or "linear". Everything is float32, in diffusers'
order of operations, so `add_noise` and `x0_from_eps` give diffusers' `DDPMScheduler.add_noise` and
`step(...).pred_original_sample` bit for bit (tests check it). The matching EDM noise level of step t
is sigma_t = sqrt((1 - abar_t) / abar_t): x_t / sqrt(abar_t) = x_0 + sigma_t eps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from sidbench.errors import ConfigError

BETA_SCHEDULES = ("scaled_linear", "linear")
SD15_SCHEDULE = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
                 "num_train_timesteps": 1000}


def check_schedule(schedule: Mapping[str, Any]) -> dict[str, Any]:
    """The four schedule facts, checked (one line naming the bad one)."""
    if not isinstance(schedule, Mapping):
        raise ConfigError(f"a DDPM schedule must be a mapping, not {type(schedule).__name__}",
                          hint=f"e.g. {SD15_SCHEDULE}")
    out = {k: schedule.get(k, SD15_SCHEDULE[k]) for k in SD15_SCHEDULE}
    if out["beta_schedule"] not in BETA_SCHEDULES:
        raise ConfigError(f"beta_schedule {out['beta_schedule']!r} is not supported",
                          hint=f"use one of {', '.join(BETA_SCHEDULES)}")
    steps = out["num_train_timesteps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= 100_000:
        raise ConfigError(f"num_train_timesteps must be a whole number from 2 to 100000, got {steps!r}")
    lo, hi = out["beta_start"], out["beta_end"]
    for name, v in (("beta_start", lo), ("beta_end", hi)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not 0 < v < 1:
            raise ConfigError(f"{name} must be a number in (0, 1), got {v!r}")
    if lo > hi:
        raise ConfigError(f"beta_start {lo} is larger than beta_end {hi}")
    return {**out, "beta_start": float(lo), "beta_end": float(hi)}


def alphas_cumprod(schedule: Mapping[str, Any]) -> torch.Tensor:
    """abar_t for t = 0..N-1, float32 [N], on the default device.

    Computed on the CPU as diffusers does, so it is diffusers' tensor bit for bit under any
    `with torch.device(...)` (a GPU linspace / cumprod may round differently), then moved: under
    "meta" the result holds no memory. The device is explicit because transformers' from_pretrained
    can leave torch's device context blind to torch.linspace for the rest of the process.
    """
    s = check_schedule(schedule)
    n = s["num_train_timesteps"]
    cpu = dict(dtype=torch.float32, device="cpu")
    if s["beta_schedule"] == "scaled_linear":
        betas = torch.linspace(s["beta_start"] ** 0.5, s["beta_end"] ** 0.5, n, **cpu) ** 2
    else:
        betas = torch.linspace(s["beta_start"], s["beta_end"], n, **cpu)
    return torch.cumprod(1.0 - betas, dim=0).to(torch.get_default_device())


def _per_sample(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    out = values.to(like.device)[t.to(like.device).long()].to(like.dtype)
    return out.reshape(-1, *([1] * (like.ndim - 1)))


def add_noise(abar: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, per sample t [b] (diffusers' add_noise)."""
    a = abar.to(device=x0.device, dtype=x0.dtype)
    return _per_sample(a ** 0.5, t, x0) * x0 + _per_sample((1 - a) ** 0.5, t, x0) * noise


def x0_from_eps(abar: torch.Tensor, x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) (diffusers' pred_original_sample, no clipping)."""
    a = _per_sample(abar, t, x_t)
    return (x_t - (1 - a) ** 0.5 * eps) / a ** 0.5


def sigmas(abar: torch.Tensor) -> torch.Tensor:
    """sigma_t = sqrt((1 - abar_t) / abar_t): the EDM noise level of each step."""
    return ((1 - abar) / abar) ** 0.5


def timestep_of_sigma(abar: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The step whose sigma_t is nearest to each sigma (in log space), long [b]."""
    grid = sigmas(abar).to(device=sigma.device, dtype=torch.float32).log()
    s = sigma.to(torch.float32).reshape(-1, 1).clamp(min=1e-12).log()
    return (s - grid.reshape(1, -1)).abs().argmin(dim=1)
