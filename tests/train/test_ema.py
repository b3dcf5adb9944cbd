"""EMA: EDM's half-life / ramp-up formula and the blending, against hand computation."""

import pytest
import torch

from sidbench.train.ema import EMA, ema_beta


def test_beta_without_rampup():
    assert ema_beta(32, 10_000, halflife_kimg=10, rampup_ratio=None) == pytest.approx(0.5 ** (32 / 10_000))


def test_beta_rampup_caps_halflife():
    # halflife = min(10 kimg, 0.05 * 1000 img) = 50 img
    assert ema_beta(32, 1000, halflife_kimg=10, rampup_ratio=0.05) == pytest.approx(0.5 ** (32 / 50))
    # late in training the cap no longer binds: min(10000, 0.05 * 1e6) = 10000
    assert ema_beta(32, 1_000_000, halflife_kimg=10, rampup_ratio=0.05) == pytest.approx(0.5 ** (32 / 10_000))


def test_beta_at_zero_images_forgets_everything():
    assert ema_beta(32, 0, halflife_kimg=10, rampup_ratio=0.05) == 0.0


def test_update_blends_parameters_and_copies_buffers():
    torch.manual_seed(0)
    net = torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema = EMA(net, halflife_kimg=0.1, rampup_ratio=None)
    assert not any(p.requires_grad for p in ema.net.parameters())
    with torch.no_grad():
        net.weight.fill_(3.0)
        net.running_mean.fill_(7.0)
    beta = ema.update(net, cur_nimg=100, batch_size=50)
    assert beta == pytest.approx(0.5 ** (50 / 100))
    torch.testing.assert_close(ema.net.weight, torch.full((3,), beta * 1.0 + (1 - beta) * 3.0))
    torch.testing.assert_close(ema.net.running_mean, torch.full((3,), 7.0))
    assert net.weight[0].item() == 3.0  # the live net is untouched


def test_ema_converges_to_a_constant_net():
    net = torch.nn.Linear(2, 2)
    ema = EMA(net, halflife_kimg=0.01, rampup_ratio=None)
    with torch.no_grad():
        net.weight.add_(1.0)
    for step in range(1, 200):
        ema.update(net, cur_nimg=10 * step, batch_size=10)
    torch.testing.assert_close(ema.net.weight, net.weight)
