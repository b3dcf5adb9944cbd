"""A 2-D Gaussian mixture whose noised score and denoiser are known exactly.

Points are 2-channel 1x1 images, shape [B, 2, 1, 1] (the toy2d suite's convention).
Component k is N(mu_k, s_k^2 I) with weight w_k. Adding noise of std sigma gives
N(mu_k, (s_k^2 + sigma^2) I), so with responsibilities
r_k(x) = w_k N(x; mu_k, v_k I) / sum_j w_j N(x; mu_j, v_j I), v_k = s_k^2 + sigma^2:

    score(x, sigma) = sum_k r_k (mu_k - x) / v_k
    D(x, sigma) = E[x0 | x] = sum_k r_k (s_k^2 x + sigma^2 mu_k) / v_k = x + sigma^2 score

Everything is computed in float64 and returned in the input's dtype.
"""

from __future__ import annotations

import math

import torch


class Toy2DMixture:
    """Isotropic 2-D Gaussian mixture: `means` [K, 2], `std` scalar or [K], `weights` [K] (normalised)."""

    def __init__(self, means, std, weights=None):
        self.means = torch.as_tensor(means, dtype=torch.float64).reshape(-1, 2)
        k = self.means.shape[0]
        self.stds = torch.as_tensor(std, dtype=torch.float64).expand(k).clone()
        w = torch.ones(k, dtype=torch.float64) if weights is None else \
            torch.as_tensor(weights, dtype=torch.float64)
        if w.shape != (k,) or (w < 0).any() or w.sum() <= 0:
            raise ValueError("weights must be K non-negative numbers with a positive sum")
        if (self.stds <= 0).any():
            raise ValueError("component stds must be positive")
        self.weights = w / w.sum()

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    # --- sampling -----------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None, *,
               return_components: bool = False):
        """n points as float32 [n, 2, 1, 1] (components drawn first, then the Gaussian noise)."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        x = self.means[comp] + self.stds[comp, None] * noise
        x = x.to(torch.float32).reshape(n, 2, 1, 1)
        return (x, comp) if return_components else x

    # --- exact quantities ---------------------------------------------------------------------
    def mean(self) -> torch.Tensor:
        """Exact mixture mean, float64 [2]."""
        return self.weights @ self.means

    def cov(self) -> torch.Tensor:
        """Exact mixture covariance, float64 [2, 2]: sum_k w_k (s_k^2 I + mu_k mu_k^T) - m m^T."""
        m = self.mean()
        second = torch.einsum("k,ki,kj->ij", self.weights, self.means, self.means)
        second = second + torch.eye(2, dtype=torch.float64) * (self.weights @ self.stds**2)
        return second - torch.outer(m, m)

    def _prepare(self, x: torch.Tensor, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        pts = x.reshape(x.shape[0], 2).to(torch.float64)
        s = torch.as_tensor(sigma, dtype=torch.float64, device=pts.device).reshape(-1)
        if s.numel() not in (1, pts.shape[0]):
            raise ValueError(f"sigma has {s.numel()} values for {pts.shape[0]} points")
        return pts, s.expand(pts.shape[0])

    def _log_joint(self, pts: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log(w_k N(x; mu_k, v_k I)) [B, K] and the variances v_k [B, K]."""
        var = self.stds[None, :] ** 2 + s[:, None] ** 2
        d2 = ((pts[:, None, :] - self.means[None]) ** 2).sum(-1)
        return torch.log(self.weights)[None] - d2 / (2 * var) - torch.log(2 * math.pi * var), var

    def _responsibilities(self, pts: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logp, var = self._log_joint(pts, s)
        return torch.softmax(logp, dim=1), var

    def log_prob(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        """Exact log density of the noised mixture at x, float64 [B]."""
        pts, s = self._prepare(x, sigma)
        return torch.logsumexp(self._log_joint(pts, s)[0], dim=1)

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """Exact grad_x log p_sigma(x), shape and dtype of x."""
        pts, s = self._prepare(x, sigma)
        r, var = self._responsibilities(pts, s)
        out = ((r / var)[:, :, None] * (self.means[None] - pts[:, None, :])).sum(1)
        return out.to(x.dtype).reshape(x.shape)

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """Exact E[x0 | x0 + sigma n = x], shape and dtype of x."""
        pts, s = self._prepare(x, sigma)
        r, var = self._responsibilities(pts, s)
        s2 = self.stds[None, :, None] ** 2
        comp = (s2 * pts[:, None, :] + (s[:, None, None] ** 2) * self.means[None]) / var[:, :, None]
        return (r[:, :, None] * comp).sum(1).to(x.dtype).reshape(x.shape)


def default_mixture(num_components: int = 8, radius: float = 0.7, std: float = 0.05) -> Toy2DMixture:
    """Equal-weight Gaussians on a circle (angles 2 pi k / K, k = 0..K-1); data lie in about [-1, 1]."""
    angles = torch.arange(num_components, dtype=torch.float64) * (2 * math.pi / num_components)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return Toy2DMixture(means, std)
