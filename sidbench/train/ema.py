"""Exponential moving average of network weights, with EDM's half-life and ramp-up.

The half-life is given in images (kimg), not steps, so the averaging horizon
does not change with the batch size; the ramp-up caps it at a fraction of the
images seen so far, so early, poor weights are forgotten quickly.
"""

from __future__ import annotations

import copy

import torch


def ema_beta(batch_size: int, cur_nimg: int, halflife_kimg: float,
             rampup_ratio: float | None = 0.05) -> float:
    """Decay for one step of `batch_size` images: 0.5 ** (batch / halflife_nimg)."""
    halflife_nimg = halflife_kimg * 1000.0
    if rampup_ratio is not None:
        halflife_nimg = min(halflife_nimg, cur_nimg * rampup_ratio)
    return 0.5 ** (batch_size / max(halflife_nimg, 1e-8))


class EMA:
    """Holds a frozen copy of `net`; `update` blends the live weights in, buffers are copied."""

    def __init__(self, net: torch.nn.Module, halflife_kimg: float, rampup_ratio: float | None = 0.05):
        self.halflife_kimg = halflife_kimg
        self.rampup_ratio = rampup_ratio
        self.net = copy.deepcopy(net).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, net: torch.nn.Module, cur_nimg: int, batch_size: int) -> float:
        """Blend after a step; `cur_nimg` counts images seen *after* that step. Returns beta."""
        beta = ema_beta(batch_size, cur_nimg, self.halflife_kimg, self.rampup_ratio)
        for p_ema, p_net in zip(self.net.parameters(), net.parameters(), strict=True):
            p_ema.copy_(p_net.detach().lerp(p_ema, beta))
        for b_ema, b_net in zip(self.net.buffers(), net.buffers(), strict=True):
            b_ema.copy_(b_net.detach())
        return beta
