"""Toy 2-D mixture: exact denoiser/score against closed forms, Monte Carlo and autograd."""

from __future__ import annotations

import math

import pytest
import torch

from sidbench.data.toy2d import Toy2DMixture, default_mixture


def test_single_gaussian_denoiser_is_the_linear_closed_form():
    mu, s = torch.tensor([0.3, -0.2], dtype=torch.float64), 0.4
    mix = Toy2DMixture(mu[None], s)
    x = torch.randn(16, 2, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for sigma in [0.01, 0.5, 3.0]:
        expected = (s**2 * x + sigma**2 * mu.reshape(1, 2, 1, 1)) / (s**2 + sigma**2)
        torch.testing.assert_close(mix.denoise(x, sigma), expected, rtol=1e-12, atol=1e-12)


def test_denoiser_matches_monte_carlo_posterior_mean():
    mix = Toy2DMixture([[0.5, 0.0], [-0.4, 0.3], [0.0, -0.6]], [0.05, 0.1, 0.08], [0.5, 0.3, 0.2])
    g = torch.Generator().manual_seed(1)
    x0 = mix.sample(400_000, g).reshape(-1, 2).double()
    sigma = 0.3
    x = torch.tensor([[0.2, 0.1], [-0.5, 0.0], [0.0, -0.3], [1.0, 1.0]], dtype=torch.float64)
    logw = -((x[:, None, :] - x0[None]) ** 2).sum(-1) / (2 * sigma**2)  # p(x | x0) for prior samples
    w = torch.softmax(logw, dim=1)
    mc = w @ x0
    got = mix.denoise(x.reshape(-1, 2, 1, 1), sigma).reshape(-1, 2)
    torch.testing.assert_close(got, mc, rtol=0, atol=5e-3)


def test_score_is_tweedie_and_the_gradient_of_log_prob():
    mix = default_mixture()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(32, 2, 1, 1, dtype=torch.float64, generator=g)
    sigma = torch.rand(32, dtype=torch.float64, generator=g) * 2 + 0.01
    score = mix.score(x, sigma)
    torch.testing.assert_close(score, (mix.denoise(x, sigma) - x) / sigma.reshape(-1, 1, 1, 1) ** 2)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.log_prob(xr, sigma).sum(), xr)
    torch.testing.assert_close(score, grad)


def test_log_prob_integrates_to_one():
    mix = Toy2DMixture([[0.2, 0.0], [-0.3, 0.1]], 0.1, [0.7, 0.3])
    h = 0.01
    grid = torch.arange(-1.5, 1.5, h, dtype=torch.float64)
    gx, gy = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    total = mix.log_prob(pts.reshape(-1, 2, 1, 1), 0.2).exp().sum() * h * h
    assert abs(total.item() - 1.0) < 1e-3


def test_sigma_forms_and_dtypes():
    mix = default_mixture()
    x = torch.randn(5, 2, 1, 1)
    a = mix.denoise(x, 0.5)
    assert a.shape == x.shape and a.dtype == torch.float32
    torch.testing.assert_close(mix.denoise(x, torch.full((5,), 0.5)), a)
    torch.testing.assert_close(mix.denoise(x, torch.full((5, 1, 1, 1), 0.5)), a)
    torch.testing.assert_close(mix.denoise(x.reshape(5, 2), 0.5), a.reshape(5, 2))
    with pytest.raises(ValueError):
        mix.denoise(x, torch.ones(3))
    # tiny sigma: the denoiser returns (almost) the point itself near the data
    near = mix.means[:1].reshape(1, 2, 1, 1).float()
    torch.testing.assert_close(mix.denoise(near, 1e-4), near, rtol=0, atol=1e-5)


def test_samples_match_exact_moments_and_are_seeded():
    mix = Toy2DMixture([[0.5, 0.1], [-0.4, 0.3], [0.0, -0.6]], [0.05, 0.1, 0.08], [0.5, 0.3, 0.2])
    x, comp = mix.sample(200_000, torch.Generator().manual_seed(3), return_components=True)
    assert x.shape == (200_000, 2, 1, 1) and x.dtype == torch.float32
    pts = x.reshape(-1, 2).double()
    torch.testing.assert_close(pts.mean(0), mix.mean(), rtol=0, atol=5e-3)
    torch.testing.assert_close(torch.cov(pts.T), mix.cov(), rtol=0, atol=5e-3)
    freq = torch.bincount(comp, minlength=3).double() / comp.numel()
    torch.testing.assert_close(freq, mix.weights, rtol=0, atol=5e-3)
    again = mix.sample(200_000, torch.Generator().manual_seed(3))
    assert torch.equal(x, again)


def test_default_mixture_lies_in_the_unit_box():
    mix = default_mixture()
    assert mix.num_components == 8
    torch.testing.assert_close(mix.means.norm(dim=1), torch.full((8,), 0.7, dtype=torch.float64))
    torch.testing.assert_close(mix.mean(), torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12)
    # equal weights on a circle: covariance (r^2 / 2 + s^2) I
    torch.testing.assert_close(mix.cov(), torch.eye(2, dtype=torch.float64) * (0.49 / 2 + 0.05**2))
    x = mix.sample(20_000, torch.Generator().manual_seed(0))
    assert x.abs().max() < 1.0
    assert math.isclose(mix.weights.sum().item(), 1.0)


def test_bad_parameters():
    with pytest.raises(ValueError):
        Toy2DMixture([[0.0, 0.0]], 0.0)
    with pytest.raises(ValueError):
        Toy2DMixture([[0.0, 0.0], [1.0, 1.0]], 0.1, [1.0, -1.0])
