"""SiDA's terms against methods.md's formulas written out here; its gates, modes, draws and scalings."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn.functional import softplus

from sidbench.errors import ConfigError
from sidbench.methods import sid, sida
from tests.methods._tiny import (
    IMG,
    assert_grads_close,
    context,
    draws,
    grads,
    lam,
    one_hot,
    tiny_net,
    trio,
    zero_grads,
)

B = 4


def last_encoder_output(net, x, sigma, labels=None, augment_labels=None):
    """(D(x), output of the last module of the encoder) from ONE forward pass (the authors' single pass)."""
    store = {}
    last = list(net.model.enc.values())[-1]
    handle = last.register_forward_hook(lambda m, args, out: store.setdefault("feats", out))
    try:
        out = net(x, sigma, labels, augment_labels=augment_labels)
    finally:
        handle.remove()
    return out, store["feats"]


def reference_generator_terms(nets, z, sigma, noise, labels, alpha):
    """sid_i and gan_i = mean_{batch, positions} BCE(clamp(l), 1) / w_i, BCE(l, 1) = softplus(-l)."""
    zeros = torch.zeros(z.shape[0], 9)
    x_g = nets["generator"](2.5 * z, torch.tensor(2.5), labels, augment_labels=zeros)
    x_t = x_g + sigma * noise
    y_r = nets["teacher"](x_t, sigma, labels, augment_labels=zeros)
    y_f, feats = last_encoder_output(nets["fake_score"], x_t, sigma, labels, zeros)
    logits = feats.mean(dim=1, keepdim=True)
    w = (x_g - y_r).abs().mean(dim=(1, 2, 3)).detach().clamp(min=1e-5)
    sid_ = ((y_r - y_f) * ((y_r - x_g) - alpha * (y_r - y_f))).sum(dim=(1, 2, 3)) / w
    gan = softplus(-logits.clamp(-10, 10)).mean() / w
    return sid_, gan


def inputs(seed=0, b=B):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, *IMG, generator=g)
    sigma = sid.generator_sigma(torch.rand(b, 1, 1, 1, generator=g))
    noise = torch.randn(b, *IMG, generator=g)
    return z, sigma, noise


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.2])
@pytest.mark.parametrize("label_dim", [0, 10])
def test_generator_terms_and_gradients_equal_the_formulas(alpha, label_dim):
    nets = trio(label_dim)
    labels = one_hot(B, label_dim) if label_dim else None
    z, sigma, noise = inputs()
    x_g = sid.generate_images(nets["generator"], z, labels, 2.5)
    teacher, fake = nets["teacher"], nets["fake_score"]
    sid_, gan = sida.generator_losses(teacher, fake, x_g, sigma, noise, labels, alpha=alpha)
    assert sid_.shape == gan.shape == (B,)
    # SiDA's SiD term is SiD's loss.
    expected_sid = sid.generator_loss(teacher, fake, x_g, sigma, noise, labels, alpha=alpha)
    torch.testing.assert_close(sid_, expected_sid)
    (sid_ + 1000 * gan).sum().backward()
    ours = grads(nets["generator"])
    zero_grads(*nets.values())
    ref_sid, ref_gan = reference_generator_terms(nets, z, sigma, noise, labels, alpha)
    (ref_sid + 1000 * ref_gan).sum().backward()
    torch.testing.assert_close(sid_, ref_sid.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gan, ref_gan.detach(), rtol=1e-5, atol=1e-7)
    assert_grads_close(ours, grads(nets["generator"]))


def test_gan_term_gradient_reaches_the_generator_through_the_logits():
    nets = trio()
    z, sigma, noise = inputs(1)
    x_g = sid.generate_images(nets["generator"], z, None, 2.5)
    _, gan = sida.generator_losses(nets["teacher"], nets["fake_score"], x_g, sigma, noise)
    gan.sum().backward()
    assert any(float(g.abs().max()) > 0 for g in grads(nets["generator"]).values())
    assert not grads(nets["teacher"])


class Stub(torch.nn.Module):
    """A denoiser c*x whose encoder features are a constant logit map (to test the clamp)."""

    def __init__(self, c, logit):
        super().__init__()
        self.c, self.logit = c, logit

    def forward(self, x, sigma, labels=None, augment_labels=None):
        return self.c * x

    def encoder_features(self, x, sigma, labels=None, augment_labels=None):
        return torch.full((x.shape[0], 4, 2, 2), self.logit) + 0 * x[:, :1, :2, :2]


@pytest.mark.parametrize("logit", [-30.0, -3.0, 0.5, 25.0])
def test_generator_logits_are_clamped_to_10(logit):
    x_g = torch.randn(3, *IMG, requires_grad=True)
    sigma, noise = torch.full((3, 1, 1, 1), 0.3), torch.randn(3, *IMG)
    _, gan = sida.generator_losses(Stub(0.9, 0.0), Stub(0.8, logit), x_g, sigma, noise)
    x_t = x_g.detach() + sigma * noise
    w = (x_g.detach() - 0.9 * x_t).abs().mean(dim=(1, 2, 3))
    expected = math.log1p(math.exp(-max(-10.0, min(10.0, logit)))) / w
    torch.testing.assert_close(gan, expected, rtol=1e-5, atol=0)


def reference_fake_terms(fake, x_g, x_real, sigma, noise, aug=None, real_aug=None):
    """denoise_i = sum lambda (D - x_g)^2; disc_i = lambda_i (mean sp(-l_real) + mean sp(l_fake)) / 2."""
    zeros = torch.zeros(x_g.shape[0], 9)
    d, feats_fake = last_encoder_output(fake, x_g + sigma * noise, sigma, None, zeros if aug is None else aug)
    _, feats_real = last_encoder_output(fake, x_real + sigma * noise, sigma, None,
                                        zeros if real_aug is None else real_aug)
    l_fake, l_real = feats_fake.mean(dim=1), feats_real.mean(dim=1)
    denoise = (lam(sigma) * (d - x_g) ** 2).sum(dim=(1, 2, 3))
    disc = lam(sigma).flatten() * (softplus(-l_real).mean() + softplus(l_fake).mean()) / 2
    return denoise, disc


@pytest.mark.parametrize("augmented", [False, True])
def test_fake_score_terms_and_gradients_equal_the_formulas(augmented):
    fake = tiny_net(1)
    g = torch.Generator().manual_seed(4)
    x_g, x_real = torch.randn(B, *IMG, generator=g).tanh(), torch.randn(B, *IMG, generator=g).tanh()
    sigma = (torch.randn(B, 1, 1, 1, generator=g) * 1.2 - 1.2).exp()
    noise = torch.randn(B, *IMG, generator=g)
    aug = torch.randn(B, 9, generator=g) if augmented else None
    real_aug = torch.randn(B, 9, generator=g) if augmented else None
    denoise, disc = sida.fake_score_losses(fake, x_g, x_real, sigma, noise, None, aug, real_aug)
    (denoise + 10 * disc).sum().backward()
    ours = grads(fake)
    zero_grads(fake)
    ref_denoise, ref_disc = reference_fake_terms(fake, x_g, x_real, sigma, noise, aug, real_aug)
    (ref_denoise + 10 * ref_disc).sum().backward()
    torch.testing.assert_close(denoise, ref_denoise.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(disc, ref_disc.detach(), rtol=1e-5, atol=1e-6)
    assert_grads_close(ours, grads(fake))
    # the denoising term is SiD's fake-score loss (the authors' zero augment labels add nothing)
    torch.testing.assert_close(denoise, sid.fake_score_loss(fake, x_g, sigma, noise, None, aug))


def test_real_and_fake_share_sigma_and_noise():
    """Swapping real and fake images swaps the BCE targets only: disc(fake=a, real=b) uses the same x_t's."""
    fake = tiny_net(1)
    x_a, x_b = torch.randn(B, *IMG).tanh(), torch.randn(B, *IMG).tanh()
    sigma, noise = torch.full((B, 1, 1, 1), 0.7), torch.randn(B, *IMG)
    _, disc = sida.fake_score_losses(fake, x_a, x_b, sigma, noise)
    l_a = sida.discriminator_logits(fake, x_a + sigma * noise, sigma, None, torch.zeros(B, 9))
    l_b = sida.discriminator_logits(fake, x_b + sigma * noise, sigma, None, torch.zeros(B, 9))
    expected = lam(sigma).flatten() * (softplus(-l_b).mean() + softplus(l_a).mean()) / 2
    torch.testing.assert_close(disc, expected)


def test_discriminator_is_the_channel_mean_of_the_last_encoder_block():
    fake = tiny_net(1)
    x, sigma = torch.randn(2, *IMG), torch.full((2, 1, 1, 1), 1.3)
    logits = sida.discriminator_logits(fake, x, sigma)
    _, feats = last_encoder_output(fake, x, sigma)
    assert logits.shape == (2, 1, 4, 4)  # 8x8 images, channel_mult [1, 2]: the encoder ends at 4x4
    torch.testing.assert_close(logits, feats.mean(dim=1, keepdim=True))


def test_a_nan_sample_contributes_zero_and_leaves_the_means():
    fake = tiny_net(1)
    g = torch.Generator().manual_seed(5)
    x_g, x_real = torch.randn(B, *IMG, generator=g).tanh(), torch.randn(B, *IMG, generator=g).tanh()
    sigma, noise = (torch.randn(B, 1, 1, 1, generator=g) - 1).exp(), torch.randn(B, *IMG, generator=g)
    keep = [0, 2, 3]
    clean = sida.fake_score_losses(fake, x_g[keep], x_real[keep], sigma[keep], noise[keep])
    for poisoned in ("x_g", "x_real"):
        xg, xr = x_g.clone(), x_real.clone()
        (xg if poisoned == "x_g" else xr)[1, 0, 0, 0] = float("nan")
        denoise, disc = sida.fake_score_losses(fake, xg, xr, sigma, noise)
        assert denoise[1] == 0 and disc[1] == 0
        assert torch.isfinite(denoise).all() and torch.isfinite(disc).all()
        torch.testing.assert_close(denoise[keep], clean[0])
        torch.testing.assert_close(disc[keep], clean[1])
    nets = trio()
    z, sigma, noise = inputs(3)
    x_g = sid.generate_images(nets["generator"], z, None, 2.5).detach()
    clean = sida.generator_losses(nets["teacher"], nets["fake_score"], x_g[keep], sigma[keep], noise[keep])
    x_g[1, 1, 1, 1] = float("nan")
    sid_, gan = sida.generator_losses(nets["teacher"], nets["fake_score"], x_g, sigma, noise)
    assert sid_[1] == 0 and gan[1] == 0
    torch.testing.assert_close(sid_[keep], clean[0])
    torch.testing.assert_close(gan[keep], clean[1])


def test_gan_term_is_a_micro_batch_mean():
    """gan_i * w_i is one number for the whole micro-batch (the authors' per-GPU mean)."""
    nets = trio()
    z, sigma, noise = inputs(6)
    x_g = sid.generate_images(nets["generator"], z, None, 2.5).detach()
    _, gan = sida.generator_losses(nets["teacher"], nets["fake_score"], x_g, sigma, noise)
    x_t = x_g + sigma * noise
    w = (x_g - nets["teacher"](x_t, sigma, None)).abs().mean(dim=(1, 2, 3))
    products = gan * w
    torch.testing.assert_close(products, products[:1].expand(B))
    _, gan_half = sida.generator_losses(nets["teacher"], nets["fake_score"], x_g[:2], sigma[:2], noise[:2])
    assert not torch.allclose(gan_half, gan[:2])  # depends on the batch it is averaged over


# --- updates ----------------------------------------------------------------------------------------


def test_phases_warm_up_the_fake_net_until_100_kimg():
    phases = sida.SIDA.phases(sida.SIDA.make_settings())
    assert [(p.updates, p.until_kimg) for p in phases] == [(("fake_score",), 100.0),
                                                           (("fake_score", "generator"), None)]
    no_warmup = sida.SIDA.phases(sida.SIDA.make_settings({"generator_start_kimg": 0}))
    assert [p.updates for p in no_warmup] == [("fake_score", "generator")]


@pytest.mark.parametrize("kimg,gan_on", [(150.0, False), (200.0, False), (200.001, True), (5000.0, True)])
def test_gan_term_joins_the_generator_loss_after_200_kimg(kimg, gan_on):
    nets = trio()
    settings = sida.SIDA.make_settings()
    out = sida.generator_update(context(nets, settings, seed=2, kimg=kimg))
    sid_, gan = out.terms["sid"], out.terms["gan"]
    chw = math.prod(IMG)
    expected = 0.5 * 100 * sid_ + 0.5 * 0.01 * chw * gan if gan_on else 100 * sid_
    torch.testing.assert_close(out.per_sample, expected)
    assert out.scale == 1.0
    # the terms are the pure function's, on the documented draws z, u, noise
    d = draws(B, seed=2)
    z, sigma, noise = d.randn(*IMG), sid.generator_sigma(d.rand(1, 1, 1)), d.randn(*IMG)
    x_g = sid.generate_images(nets["generator"], z, None, 2.5)
    ref = sida.generator_losses(nets["teacher"], nets["fake_score"], x_g, sigma, noise, alpha=1.0)
    torch.testing.assert_close(sid_, ref[0])
    torch.testing.assert_close(gan, ref[1])


def test_fake_score_update_draws_z_sigma_noise_and_uses_the_real_batch():
    nets = trio(label_dim=10)
    labels = one_hot(B, 10)
    real = torch.randn(B, *IMG, generator=torch.Generator().manual_seed(8)).tanh()
    settings = sida.SIDA.make_settings({"disc_scale": 2.0})
    out = sida.fake_score_update(context(nets, settings, seed=3, labels=labels, images=real, label_dim=10))
    d = draws(B, seed=3)
    z = d.randn(*IMG)
    sigma = (d.randn(1, 1, 1) * 1.2 - 1.2).exp()
    noise = d.randn(*IMG)
    with torch.no_grad():
        x_g = sid.generate_images(nets["generator"], z, labels, 2.5)
    denoise, disc = sida.fake_score_losses(nets["fake_score"], x_g, real, sigma, noise, labels)
    torch.testing.assert_close(out.terms["fake_score"], denoise)
    torch.testing.assert_close(out.terms["discriminator"], disc)
    torch.testing.assert_close(out.per_sample, denoise + 2.0 * disc)


def test_updates_set_modes():
    nets = trio(dropout=0.1)
    for net in nets.values():
        net.train()
    seen = []
    for name, net in nets.items():
        net.register_forward_pre_hook(lambda m, args, name=name: seen.append((name, m.training)))
    real = torch.randn(B, *IMG).tanh()
    sida.fake_score_update(context(nets, sida.SIDA.make_settings(), images=real))
    assert set(seen) == {("generator", False), ("fake_score", True)}
    seen.clear()
    sida.generator_update(context(nets, sida.SIDA.make_settings(), images=real))
    assert set(seen) == {("generator", True), ("teacher", False), ("fake_score", False)}


def test_fake_score_update_without_real_images_is_refused():
    with pytest.raises(ConfigError, match="real images"):
        sida.fake_score_update(context(trio(), sida.SIDA.make_settings()))


def test_method_declaration():
    m = sida.SIDA
    assert (m.name, m.version, m.needs_real_data, m.product, m.product_role) == (
        "sida", "1.0.0", True, "generator", "generator")
    assert "2410.14919" in m.paper and "SiD²A" in m.description
    s = m.make_settings()
    assert (s.alpha, s.loss_scale, s.gan_scale, s.disc_scale, s.generator_start_kimg, s.gan_start_kimg) == (
        1.0, 100.0, 0.01, 1.0, 100.0, 200.0)
