"""Tiny networks for the generate tests: an exact Gaussian denoiser and ones that misbehave on purpose."""

from __future__ import annotations

import math
import threading

import torch


class GaussDenoiser(torch.nn.Module):
    """Exact denoiser of N(m_class, s^2 I) data; the preconditioned-denoiser interface.

    `gain` (a parameter, 1.0) multiplies the output, so tests can plant NaN weights.
    """

    def __init__(self, res=4, ch=3, label_dim=0, mean=0.1, std=0.5, gain=False):
        super().__init__()
        self.img_resolution, self.img_channels, self.label_dim = res, ch, label_dim
        self.sigma_min, self.sigma_max, self.sigma_data = 0.0, math.inf, 0.5
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float64))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float64))
        self.gain = torch.nn.Parameter(torch.ones(())) if gain else None

    def round_sigma(self, sigma):
        return torch.as_tensor(sigma)

    def forward(self, x, sigma, class_labels=None, force_fp32=False, **kwargs):
        x = x.to(torch.float64)
        sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1, 1, 1)
        m = self.mean
        if class_labels is not None:
            m = m + (class_labels.double() @ torch.linspace(-0.9, 0.9, self.label_dim, dtype=torch.float64))
            m = m.reshape(-1, 1, 1, 1)
        s2 = self.std**2
        out = m + (x - m) * s2 / (s2 + sigma**2)
        if self.gain is not None:
            out = out * self.gain.double()
        return out.to(torch.float32)


class BadOutputOnCall(GaussDenoiser):
    """Finite weights, but call number `bad_call` (0-based) returns `value` for image `which` of its batch."""

    def __init__(self, bad_call=0, value=math.nan, which=0, **kw):
        super().__init__(**kw)
        self.bad_call, self.value, self.which, self.calls = bad_call, value, which, 0

    def forward(self, x, sigma, class_labels=None, **kwargs):
        out = super().forward(x, sigma, class_labels, **kwargs)
        if self.calls == self.bad_call:
            out[self.which] = self.value
        self.calls += 1
        return out


class BlockingDenoiser(GaussDenoiser):
    """Waits in its first call until released: holds a generate run (and its lock) open."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.entered, self.release = threading.Event(), threading.Event()

    def forward(self, *args, **kwargs):
        self.entered.set()
        assert self.release.wait(30), "test never released the network"
        return super().forward(*args, **kwargs)
