"""Samplers: EDM's Heun sampler for teachers, one network call for one-step generators.

`edm_sampler` follows EDM's Algorithm 2 step for step (float64 state, time steps
rounded by the network, last step plain Euler, churn noise drawn from the per-image
generator), so that with `StackedRandomGenerator` it reproduces EDM's images.
A deterministic run costs `heun_nfe(num_steps) = 2 * num_steps - 1` network calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from sidbench.errors import ConfigError


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
    if num_steps < 2:
        raise ConfigError(f"--steps {num_steps} is too few for the Heun sampler", hint="use 2 or more steps")
    sigma_min = max(sigma_min, float(net.sigma_min))
    sigma_max = min(sigma_max, float(net.sigma_max))
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
    b = z.shape[0]
    x = z.to(torch.float64) * sigma_init
    sigma = torch.full([b], float(sigma_init), device=z.device)
    kwargs = {}
    dim = augment_dim(generator)
    if dim:
        kwargs["augment_labels"] = torch.zeros([b, dim], device=z.device)
    return generator(x, sigma, class_labels, **kwargs).to(torch.float64)
