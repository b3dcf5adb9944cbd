"""The edm method: EDM's denoising loss written out, its draw order, label dropout and declaration."""

from __future__ import annotations

import pytest
import torch

from sidbench.errors import ConfigError
from sidbench.methods import edm
from tests.methods._tiny import (
    IMG,
    assert_grads_close,
    context,
    draws,
    grads,
    lam,
    one_hot,
    tiny_net,
    zero_grads,
)

B = 4


@pytest.mark.parametrize("label_dim", [0, 10])
def test_denoising_loss_and_gradients_equal_the_formula(label_dim):
    net = tiny_net(3, label_dim)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, *IMG, generator=g).tanh()
    sigma = (torch.randn(B, 1, 1, 1, generator=g) * 1.2 - 1.2).exp()
    noise = torch.randn(B, *IMG, generator=g)
    labels = one_hot(B, label_dim) if label_dim else None
    ours = edm.denoising_loss(net, x, sigma, noise, labels)
    ours.sum().backward()
    ours_grads = grads(net)
    zero_grads(net)
    ref = []
    for i in range(B):
        label = None if labels is None else labels[i:i + 1]
        d = net(x[i:i + 1] + sigma[i] * noise[i:i + 1], sigma[i], label)
        ref.append((lam(sigma[i]) * (d - x[i]) ** 2).sum())
    ref = torch.stack(ref)
    ref.sum().backward()
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-5, atol=1e-5)
    assert_grads_close(ours_grads, grads(net))


def test_loss_weight_is_lambda():
    sigma = torch.tensor([0.002, 0.5, 3.0, 80.0])
    torch.testing.assert_close(edm.loss_weight(sigma), 1 / 0.25 + 1 / sigma**2)


def test_update_draws_sigma_then_noise_then_label_dropout():
    net = tiny_net(3, label_dim=10)
    images = torch.randn(B, *IMG, generator=torch.Generator().manual_seed(1)).tanh()
    labels = one_hot(B, 10)
    settings = edm.EDM.make_settings({"label_dropout": 0.5})
    out = edm.denoiser_update(context({"denoiser": net}, settings, seed=4, labels=labels, images=images,
                                      label_dim=10))
    assert net.training
    d = draws(B, seed=4)
    sigma = (d.randn(1, 1, 1) * 1.2 - 1.2).exp()
    noise = d.randn(*IMG)
    keep = (d.rand(1) >= 0.5).float()
    assert 0 < keep.sum() < B  # these seeds drop some labels and keep others
    torch.testing.assert_close(out.per_sample, edm.denoising_loss(net, images, sigma, noise, labels * keep))
    assert out.scale == 1.0 and set(out.terms) == {"denoise"}


def test_update_needs_images():
    with pytest.raises(ConfigError, match="real images"):
        edm.denoiser_update(context({"denoiser": tiny_net()}, edm.EDM.make_settings()))


def test_nan_sample_contributes_zero():
    net = tiny_net(3)
    x = torch.randn(B, *IMG).tanh()
    sigma, noise = torch.full((B, 1, 1, 1), 0.4), torch.randn(B, *IMG)
    clean = edm.denoising_loss(net, x, sigma, noise)
    x[2, 0, 1, 1] = float("nan")
    loss = edm.denoising_loss(net, x, sigma, noise)
    assert loss[2] == 0
    torch.testing.assert_close(loss[[0, 1, 3]], clean[[0, 1, 3]])


def test_zero_augment_labels_follow_the_network():
    x = torch.randn(2, *IMG)
    assert edm.zero_augment_labels(tiny_net(), x).shape == (2, 9)
    assert edm.zero_augment_labels(tiny_net(augment_dim=0), x) is None
    assert edm.augment_dim(lambda *a: None) == 0  # not an EDM network: no augment layer


def test_augment_with_p_zero_draws_nothing_and_gives_no_labels():
    d = draws(3)
    images = torch.randn(3, *IMG)
    out, labels = edm.augment(images, d, edm.AugmentSettings())
    assert out is images and labels is None
    assert torch.equal(d.randn(1), draws(3).randn(1))  # no draw was taken


def test_method_declaration():
    m = edm.EDM
    assert (m.name, m.version, m.needs_real_data, m.product, m.product_role) == (
        "edm", "1.0.0", True, "denoiser", "teacher")
    assert [(n.name, n.init, n.ema) for n in m.networks] == [("denoiser", "scratch", True)]
    assert [p.updates for p in m.phases(m.make_settings())] == [("denoiser",)]
    s = m.make_settings()
    assert (s.P_mean, s.P_std, s.label_dropout, s.augment_p) == (-1.2, 1.2, 0.0, 0.0)
