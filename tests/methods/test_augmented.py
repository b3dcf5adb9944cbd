"""The augmented paths: EDM's pipeline (sidbench.data.augment) where the recipes say, in draw order."""

from __future__ import annotations

import torch

from sidbench.data.augment import AugmentPipe
from sidbench.methods import edm, sid, sida
from tests.methods._tiny import IMG, context, draws, one_hot, tiny_net, trio

B = 4


def test_settings_build_edm_train_pipeline():
    s = sid.SID.make_settings({"augment_p": 0.12})
    assert edm.augment_pipe(s) == AugmentPipe.edm_train(0.12)  # EDM train.py --augment 0.12, as SiD uses


def test_sid_fake_update_augments_between_sigma_and_noise():
    nets = trio()
    settings = sid.SID.make_settings({"augment_p": 1.0})
    out = sid.fake_score_update(context(nets, settings, seed=7))
    d = draws(B, seed=7)
    z = d.randn(*IMG)
    sigma = (d.randn(1, 1, 1) * 1.2 - 1.2).exp()
    with torch.no_grad():
        x_g = sid.generate_images(nets["generator"], z, None, 2.5)
    x_aug, labels = AugmentPipe.edm_train(1.0)(x_g, d)
    noise = d.randn(*IMG)
    assert labels.shape == (B, 9) and labels.abs().sum() > 0
    torch.testing.assert_close(out.per_sample, sid.fake_score_loss(nets["fake_score"], x_aug, sigma, noise,
                                                                   augment_labels=labels))
    plain = sid.fake_score_update(context(nets, sid.SID.make_settings(), seed=7)).per_sample
    assert not torch.allclose(out.per_sample, plain)


def test_sida_fake_update_augments_fake_then_real_independently():
    nets = trio()
    real = torch.randn(B, *IMG, generator=torch.Generator().manual_seed(2)).tanh()
    settings = sida.SIDA.make_settings({"augment_p": 1.0})
    out = sida.fake_score_update(context(nets, settings, seed=8, images=real))
    d = draws(B, seed=8)
    z = d.randn(*IMG)
    sigma = (d.randn(1, 1, 1) * 1.2 - 1.2).exp()
    with torch.no_grad():
        x_g = sid.generate_images(nets["generator"], z, None, 2.5)
    pipe = AugmentPipe.edm_train(1.0)
    x_aug, labels = pipe(x_g, d)
    noise = d.randn(*IMG)
    real_aug, real_labels = pipe(real, d)
    assert not torch.equal(labels, real_labels)  # each image its own augmentation
    denoise, disc = sida.fake_score_losses(nets["fake_score"], x_aug, real_aug, sigma, noise, None, labels,
                                           real_labels)
    torch.testing.assert_close(out.terms["fake_score"], denoise)
    torch.testing.assert_close(out.terms["discriminator"], disc)


def test_edm_update_augments_between_sigma_and_noise():
    net = tiny_net(3, label_dim=10)
    images = torch.randn(B, *IMG, generator=torch.Generator().manual_seed(1)).tanh()
    labels = one_hot(B, 10)
    settings = edm.EDM.make_settings({"augment_p": 0.5})
    out = edm.denoiser_update(context({"denoiser": net}, settings, seed=9, labels=labels, images=images,
                                      label_dim=10))
    d = draws(B, seed=9)
    sigma = (d.randn(1, 1, 1) * 1.2 - 1.2).exp()
    x, aug = AugmentPipe.edm_train(0.5)(images, d)
    noise = d.randn(*IMG)
    torch.testing.assert_close(out.per_sample, edm.denoising_loss(net, x, sigma, noise, labels, aug))
