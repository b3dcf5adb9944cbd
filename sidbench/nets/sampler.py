"""Samplers: EDM's Heun sampler for teachers, one network call for one-step generators.

`edm_sampler` follows EDM's Algorithm 2 step for step (float64 state, time steps
rounded by the network, last step plain Euler, churn noise drawn from the per-image
generator), so that with `StackedRandomGenerator` it reproduces EDM's images.
A deterministic run costs `heun_nfe(num_steps) = 2 * num_steps - 1` network calls.
`check_sampler_settings` is the one check of the numeric settings, for every caller
(generate, eval, training) to run before any work: a zero sigma_min, a NaN sigma or a
zero rho would otherwise turn into NaN images much later.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch

from sidbench.errors import ConfigError

SAMPLERS = ("heun", "onestep")
MAX_STEPS = 100_000  # far beyond any published schedule (EDM's longest: 256 steps)


def default_steps(resolution: int) -> int:
    """EDM's published teacher settings: 18 steps (35 NFE) up to 32x32, 40 (79 NFE) above."""
    return 18 if resolution <= 32 else 40


_HINTS = {
    "sigma_min": "use e.g. 0.002, EDM's default",
    "sigma_max": "use e.g. 80, EDM's default",
    "rho": "use e.g. 7, EDM's default",
    "S_churn": "use 0 for the deterministic sampler, e.g. 40 for EDM's stochastic one",
    "S_min": "use e.g. 0 or 0.05",
    "S_max": "use e.g. inf for no upper limit, or 50",
    "S_noise": "use e.g. 1.0 or 1.003",
    "sigma_init": "use e.g. 2.5, SiD's default",
}


def _number(name: str, value: Any, *, above: float | None = None, at_least: float | None = None,
            bound_name: str | None = None, allow_inf: bool = False) -> float:
    """`value` as a float, refused unless a real number, finite (or +inf if allowed) and in range."""
    hint = _HINTS[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, not {value!r}", hint=hint)
    x = float(value)
    if math.isnan(x) or (math.isinf(x) and not (allow_inf and x > 0)):
        raise ConfigError(f"{name} {x} must be a finite number{' or inf' if allow_inf else ''}", hint=hint)
    if above is not None and not x > above:
        raise ConfigError(f"{name} {x:g} must be greater than {bound_name or format(above, 'g')}", hint=hint)
    if at_least is not None and not x >= at_least:
        raise ConfigError(f"{name} {x:g} must be at least {bound_name or format(at_least, 'g')}", hint=hint)
    return x


def check_sampler_settings(
    num_steps: int = 18,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    S_churn: float = 0.0,
    S_min: float = 0.0,
    S_max: float = math.inf,
    S_noise: float = 1.0,
    sigma_init: float = 2.5,
    *,
    sampler: str = "heun",
) -> dict[str, Any]:
    """Validate every sampler setting (type, finite, in range); return them as int/floats.

    The returned dict has the nine keys above; `edm_sampler` takes all but `sigma_init`.
    Every value is checked whichever `sampler` is chosen (defaults are valid), except
    the step count, which only the Heun sampler needs to be 2 or more. sigma_min must be
    above 0 because the sampler divides by it; only S_max may be inf.
    """
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler '{sampler}'", hint=f"choose one of {', '.join(SAMPLERS)}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral):
        raise ConfigError(f"num_steps must be a whole number, not {num_steps!r}", hint="use e.g. 18 steps")
    steps = int(num_steps)
    low = 2 if sampler == "heun" else 1
    if not low <= steps <= MAX_STEPS:
        hint = f"use {low} or more steps" if steps < low else f"use at most {MAX_STEPS} steps"
        raise ConfigError(f"num_steps {steps} is out of range for the {sampler} sampler", hint=hint)
    lo = _number("sigma_min", sigma_min, above=0.0)
    hi = _number("sigma_max", sigma_max, above=lo, bound_name=f"sigma_min {lo:g}")
    s_min = _number("S_min", S_min, at_least=0.0)
    return {
        "num_steps": steps,
        "sigma_min": lo,
        "sigma_max": hi,
        "rho": _number("rho", rho, above=0.0),
        "S_churn": _number("S_churn", S_churn, at_least=0.0),
        "S_min": s_min,
        "S_max": _number("S_max", S_max, at_least=s_min, bound_name=f"S_min {s_min:g}", allow_inf=True),
        "S_noise": _number("S_noise", S_noise, at_least=0.0),
        "sigma_init": _number("sigma_init", sigma_init, above=0.0),
    }


def heun_nfe(num_steps: int) -> int:
    """Network evaluations per image of `edm_sampler` (the last step has no correction)."""
    return 2 * num_steps - 1


def edm_time_steps(
    net,
    num_steps: int = 18,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """EDM's noise levels t_0 > ... > t_{N-1} (rounded by `net.round_sigma`) followed by t_N = 0.

    sigma_min / sigma_max are clamped to the range the network supports.
    """
    check_sampler_settings(num_steps, sigma_min, sigma_max, rho)
    sigma_min = max(sigma_min, float(net.sigma_min))
    sigma_max = min(sigma_max, float(net.sigma_max))
    if not 0 < sigma_min < sigma_max < math.inf:
        raise ConfigError(
            f"the network supports sigma {float(net.sigma_min):g}..{float(net.sigma_max):g}, which leaves "
            f"an empty noise range for the sampler ({sigma_min:g}..{sigma_max:g})",
            hint="choose sigma_min and sigma_max inside the network's range",
        )
    i = torch.arange(num_steps, dtype=torch.float64, device=device)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    t = (hi + i / (num_steps - 1) * (lo - hi)) ** rho
    t = torch.as_tensor(net.round_sigma(t), dtype=torch.float64, device=device)
    return torch.cat([t, torch.zeros_like(t[:1])])


@torch.no_grad()
def edm_sampler(
    net,
    latents: torch.Tensor,
    class_labels: torch.Tensor | None = None,
    randn_like: Callable[[torch.Tensor], torch.Tensor] = torch.randn_like,
    num_steps: int = 18,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    S_churn: float = 0.0,
    S_min: float = 0.0,
    S_max: float = math.inf,
    S_noise: float = 1.0,
) -> torch.Tensor:
    """Integrate the probability-flow ODE (or EDM's stochastic variant) from noise to images.

    `latents` are unit-variance noise; returns float64 images (about [-1, 1]).
    With `S_churn > 0`, noise is drawn with `randn_like` once per step (also at steps
    outside [S_min, S_max], as EDM does, so the random stream stays aligned).
    """
    check_sampler_settings(num_steps, sigma_min, sigma_max, rho, S_churn, S_min, S_max, S_noise)
    t_steps = edm_time_steps(net, num_steps, sigma_min, sigma_max, rho, device=latents.device)
    stochastic = S_churn > 0
    x_next = latents.to(torch.float64) * t_steps[0]
    for i in range(num_steps):
        t_cur, t_next = t_steps[i], t_steps[i + 1]
        x_cur = x_next
        if stochastic:
            in_range = S_min <= float(t_cur) <= S_max
            gamma = min(S_churn / num_steps, math.sqrt(2) - 1) if in_range else 0.0
            t_hat = torch.as_tensor(net.round_sigma(t_cur + gamma * t_cur), dtype=torch.float64)
            noise = randn_like(x_cur)
            x_hat = x_cur + (t_hat**2 - t_cur**2).sqrt() * S_noise * noise
        else:
            # No churn ever: skipping the (zero-weighted) noise draws changes no output.
            t_hat = torch.as_tensor(net.round_sigma(t_cur), dtype=torch.float64)
            x_hat = x_cur

        denoised = net(x_hat, t_hat, class_labels).to(torch.float64)
        d_cur = (x_hat - denoised) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur

        if i < num_steps - 1:  # Heun correction; the last step (to t_N = 0) stays Euler
            denoised = net(x_next, t_next, class_labels).to(torch.float64)
            d_prime = (x_next - denoised) / t_next
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


def augment_dim(net) -> int:
    """Width of the network's augmentation-label input (0 if it has none)."""
    model = getattr(net, "model", net)
    for obj in (net, model):
        dim = getattr(obj, "augment_dim", None)
        if isinstance(dim, int):
            return dim
    dim = (getattr(net, "init_kwargs", None) or {}).get("augment_dim")
    if isinstance(dim, int):
        return dim
    layer = getattr(model, "map_augment", None)
    return int(getattr(layer, "in_features", 0) or 0) if layer is not None else 0


@torch.no_grad()
def onestep_generate(
    generator,
    z: torch.Tensor,
    class_labels: torch.Tensor | None = None,
    sigma_init: float = 2.5,
) -> torch.Tensor:
    """SiD's one-step generator: G(sigma_init * z, sigma_init, labels), zero augment labels.

    Returns float64 images (1 network call per image), matching SiD's generate script.
    """
    check_sampler_settings(sigma_init=sigma_init, sampler="onestep")
    b = z.shape[0]
    x = z.to(torch.float64) * sigma_init
    sigma = torch.full([b], float(sigma_init), device=z.device)
    kwargs = {}
    dim = augment_dim(generator)
    if dim:
        kwargs["augment_labels"] = torch.zeros([b, dim], device=z.device)
    return generator(x, sigma, class_labels, **kwargs).to(torch.float64)
