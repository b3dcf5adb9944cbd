"""SiD's losses against methods.md's formulas written out per sample; its updates' draws, modes and phases."""

from __future__ import annotations

import pytest
import torch

from sidbench.methods import sid
from sidbench.methods.base import Draws
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


def inputs(seed: int = 0, b: int = B):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, *IMG, generator=g)
    u = torch.rand(b, 1, 1, 1, generator=g)
    noise = torch.randn(b, *IMG, generator=g)
    return z, sid.generator_sigma(u), noise


def reference_generator_loss(nets, z, sigma, noise, labels, alpha, detach_inputs=False):
    """methods.md's SiD loss, one sample at a time, with autograd through everything it names."""
    zeros = torch.zeros(1, 9)
    out = []
    for i in range(z.shape[0]):
        lab = None if labels is None else labels[i:i + 1]
        x_g = nets["generator"](2.5 * z[i:i + 1], torch.tensor(2.5), lab, augment_labels=zeros)
        x_t = x_g + sigma[i:i + 1] * noise[i:i + 1]
        x_in = x_t.detach() if detach_inputs else x_t
        y_r = nets["teacher"](x_in, sigma[i:i + 1], lab, augment_labels=zeros)
        y_f = nets["fake_score"](x_in, sigma[i:i + 1], lab, augment_labels=zeros)
        w = max(float((x_g - y_r).detach().abs().mean()), 1e-5)
        out.append(((y_r - y_f) * ((y_r - x_g) - alpha * (y_r - y_f))).sum() / w)
    return torch.stack(out)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.2])
@pytest.mark.parametrize("label_dim", [0, 10])
def test_generator_loss_and_gradients_equal_the_formula(alpha, label_dim):
    nets = trio(label_dim)
    labels = one_hot(B, label_dim) if label_dim else None
    z, sigma, noise = inputs()
    x_g = sid.generate_images(nets["generator"], z, labels, 2.5)
    ours = sid.generator_loss(nets["teacher"], nets["fake_score"], x_g, sigma, noise, labels, alpha=alpha)
    assert ours.shape == (B,)
    ours.sum().backward()
    ours_grads = grads(nets["generator"])
    zero_grads(*nets.values())
    ref = reference_generator_loss(nets, z, sigma, noise, labels, alpha)
    ref.sum().backward()
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-5, atol=1e-6)
    assert_grads_close(ours_grads, grads(nets["generator"]))
    assert not grads(nets["teacher"])  # frozen


def test_gradients_flow_through_both_networks_inputs():
    nets = trio()
    z, sigma, noise = inputs(1)
    x_g = sid.generate_images(nets["generator"], z, None, 2.5)
    loss = sid.generator_loss(nets["teacher"], nets["fake_score"], x_g, sigma, noise)
    loss.sum().backward()
    full = grads(nets["generator"])
    zero_grads(*nets.values())
    reference_generator_loss(nets, z, sigma, noise, None, 1.2, detach_inputs=True).sum().backward()
    detached = grads(nets["generator"])
    differences = [float((full[n] - detached[n]).abs().max() / (full[n].abs().max() + 1e-12)) for n in full]
    assert max(differences) > 1e-2  # the networks' inputs carry a real share of the gradient


def test_normaliser_is_floored_at_1e_5():
    """y_r = x_g makes mean|x_g - y_r| = 0: w must be 1e-5 (a finite loss), not 0."""
    x_g = torch.randn(2, *IMG)
    teacher = lambda x, s, labels=None, augment_labels=None: x_g  # noqa: E731
    fake = lambda x, s, labels=None, augment_labels=None: x_g + 1e-3  # noqa: E731
    sigma, noise = torch.full((2, 1, 1, 1), 0.5), torch.randn(2, *IMG)
    loss = sid.generator_loss(teacher, fake, x_g, sigma, noise, alpha=1.0)
    # per pixel: (y_r - y_f) * ((y_r - x_g) - 1 * (y_r - y_f)) = (-1e-3) * (1e-3)
    torch.testing.assert_close(loss, torch.full((2,), -1e-6 * x_g[0].numel() / 1e-5), rtol=1e-4, atol=0)


class Poison(torch.nn.Module):
    """A network whose output row `row` is NaN (a diverged sample)."""

    def __init__(self, net, row):
        super().__init__()
        self.net, self.row = net, row

    def forward(self, x, sigma, labels=None, augment_labels=None):
        y = self.net(x, sigma, labels, augment_labels=augment_labels).clone()
        y[self.row, 0, 0, 0] = float("nan")
        return y


@pytest.mark.parametrize("where", ["x_g", "teacher", "fake_score"])
def test_a_sample_with_nan_contributes_zero(where):
    nets = trio()
    z, sigma, noise = inputs(2)
    x_g = sid.generate_images(nets["generator"], z, None, 2.5).detach().requires_grad_(True)
    clean = sid.generator_loss(nets["teacher"], nets["fake_score"], x_g, sigma, noise)
    clean.sum().backward()
    clean_grad = x_g.grad.clone()
    x_g.grad = None
    teacher, fake, x_in = nets["teacher"], nets["fake_score"], x_g
    if where == "x_g":
        x_in = x_g.clone()
        x_in.data[1, 2, 3, 4] = float("nan")
    elif where == "teacher":
        teacher = Poison(teacher, 1)
    else:
        fake = Poison(fake, 1)
    loss = sid.generator_loss(teacher, fake, x_in, sigma, noise)
    assert loss[1] == 0 and torch.isfinite(loss).all()
    keep = [0, 2, 3]
    torch.testing.assert_close(loss[keep], clean[keep].detach())
    loss.sum().backward()
    torch.testing.assert_close(x_g.grad[keep], clean_grad[keep])


def test_fake_score_loss_equals_the_weighted_denoising_loss():
    fake = tiny_net(1)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(B, *IMG, generator=g).tanh()
    sigma = (torch.randn(B, 1, 1, 1, generator=g) * 1.2 - 1.2).exp()
    noise = torch.randn(B, *IMG, generator=g)
    aug = torch.randn(B, 9, generator=g)
    for augment_labels in (None, aug):
        ours = sid.fake_score_loss(fake, x, sigma, noise, augment_labels=augment_labels)
        ref = []
        for i in range(B):
            aug_i = None if augment_labels is None else augment_labels[i:i + 1]
            d = fake(x[i:i + 1] + sigma[i] * noise[i:i + 1], sigma[i:i + 1], None, augment_labels=aug_i)
            ref.append((lam(sigma[i]) * (d - x[i]) ** 2).sum())
        ref = torch.stack(ref)
        torch.testing.assert_close(ours, ref.detach(), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(sid.fake_score_loss(fake, x, sigma, noise, augment_labels=aug),
                              sid.fake_score_loss(fake, x, sigma, noise))  # the labels reach the net


def test_generator_sigma_follows_the_tmax_law():
    u = torch.tensor([0.0, 0.5, 0.999999])
    s = sid.generator_sigma(u, tmax=800)
    lo, hi = 0.002 ** (1 / 7), 80 ** (1 / 7)
    expected = [(hi + (1 - t * 0.8) * (lo - hi)) ** 7 for t in u.tolist()]
    torch.testing.assert_close(s, torch.tensor(expected))
    assert abs(float(s[0]) - 0.002) < 1e-7 and 24.40 < float(s[-1]) < 24.42
    assert float(sid.generator_sigma(torch.tensor(0.999999), tmax=1000)) == pytest.approx(80, rel=1e-4)


def test_generate_images_is_the_teacher_at_sigma_init():
    gen = tiny_net(2)
    z = torch.randn(3, *IMG)
    out = sid.generate_images(gen, z, None, 2.5)
    torch.testing.assert_close(out, gen(2.5 * z, torch.tensor(2.5), None, augment_labels=torch.zeros(3, 9)))
    torch.testing.assert_close(out, gen(2.5 * z, 2.5, None))  # zero augment labels add nothing
    no_aug = tiny_net(2, augment_dim=0)  # ImageNet's ADM has no augment layer: no labels are passed
    torch.testing.assert_close(sid.generate_images(no_aug, z, None, 2.5), no_aug(2.5 * z, 2.5, None))


# --- updates: draw order, modes, reduction ----------------------------------------------------------


def test_generator_update_draws_z_then_u_then_noise():
    nets = trio()
    settings = sid.SID.make_settings({"alpha": 1.0})
    out = sid.generator_update(context(nets, settings, seed=5))
    d = draws(B, seed=5)
    z = d.randn(*IMG)
    sigma = sid.generator_sigma(d.rand(1, 1, 1))
    noise = d.randn(*IMG)
    x_g = sid.generate_images(nets["generator"], z, None, 2.5)
    expected = sid.generator_loss(nets["teacher"], nets["fake_score"], x_g, sigma, noise, alpha=1.0)
    torch.testing.assert_close(out.per_sample, expected)
    assert out.scale == 100.0 and set(out.terms) == {"generator"}
    assert out.per_sample.requires_grad


def test_fake_score_update_draws_z_then_sigma_then_noise_and_has_no_generator_graph():
    nets = trio()
    settings = sid.SID.make_settings({"P_mean": -1.0, "P_std": 1.1})
    out = sid.fake_score_update(context(nets, settings, seed=6))
    d = draws(B, seed=6)
    z = d.randn(*IMG)
    sigma = (d.randn(1, 1, 1) * 1.1 - 1.0).exp()
    noise = d.randn(*IMG)
    with torch.no_grad():
        x_g = sid.generate_images(nets["generator"].eval(), z, None, 2.5)
    nets["fake_score"].train()
    torch.testing.assert_close(out.per_sample, sid.fake_score_loss(nets["fake_score"], x_g, sigma, noise))
    assert out.scale == 1.0
    out.per_sample.sum().backward()
    assert not grads(nets["generator"]) and grads(nets["fake_score"])


def test_draws_are_per_sample_so_splitting_the_batch_changes_nothing():
    nets = trio()
    settings = sid.SID.make_settings()
    gens = [torch.Generator().manual_seed(100 + j) for j in range(B)]
    ctx = context(nets, settings)
    ctx.draws = Draws(gens)
    whole = sid.generator_update(ctx).per_sample.detach()
    halves = []
    for part in (range(0, 2), range(2, 4)):
        ctx = context(nets, settings, b=2)
        ctx.draws = Draws([torch.Generator().manual_seed(100 + j) for j in part])
        halves.append(sid.generator_update(ctx).per_sample.detach())
    torch.testing.assert_close(torch.cat(halves), whole, rtol=1e-5, atol=1e-6)


def record_modes(nets):
    seen = []
    for name, net in nets.items():
        net.register_forward_pre_hook(lambda m, args, name=name: seen.append((name, m.training)))
    return seen


@pytest.mark.parametrize("update,expected", [
    ("fake_score", {("generator", False), ("fake_score", True)}),
    ("generator", {("generator", True), ("teacher", False), ("fake_score", False)}),
])
def test_each_update_sets_the_modes_methods_md_lists(update, expected):
    nets = trio(dropout=0.1)
    for net in nets.values():  # whatever modes the trainer left, the update sets its own
        net.train()
    seen = record_modes(nets)
    sid.SID.update(update).fn(context(nets, sid.SID.make_settings()))
    assert set(seen) == expected


def test_conditional_network_without_labels_is_refused():
    from sidbench.errors import ConfigError

    nets = trio(label_dim=10)
    with pytest.raises(ConfigError, match="conditional"):
        sid.generator_update(context(nets, sid.SID.make_settings(), label_dim=10))


def test_labels_from_the_loader_reach_every_network():
    nets = trio(label_dim=10)
    labels = one_hot(B, 10)
    settings = sid.SID.make_settings()
    with_labels = sid.generator_update(context(nets, settings, labels=labels, label_dim=10)).per_sample
    other_labels = one_hot(B, 10, seed=9)
    other = sid.generator_update(context(nets, settings, labels=other_labels, label_dim=10)).per_sample
    assert not torch.allclose(with_labels, other)


def test_method_declaration():
    m = sid.SID
    assert (m.name, m.version, m.product, m.product_role, m.needs_real_data) == (
        "sid", "1.0.0", "generator", "generator", False)
    assert "2404.04057" in m.paper
    assert [(n.name, n.init, n.ema) for n in m.networks] == [("generator", "teacher", True),
                                                             ("fake_score", "teacher", False)]
    phases = m.phases(m.make_settings())
    assert [p.updates for p in phases] == [("fake_score", "generator")]  # fake net first, then generator
    s = m.make_settings()
    assert (s.sigma_init, s.alpha, s.tmax, s.sigma_min, s.sigma_max, s.rho, s.P_mean, s.P_std, s.loss_scale,
            s.augment_p) == (2.5, 1.2, 800, 0.002, 80.0, 7.0, -1.2, 1.2, 100.0, 0.0)
    assert (s.augment_xflip, s.augment_yflip, s.augment_scale, s.augment_rotate_frac, s.augment_aniso,
            s.augment_translate_frac) == (1e8, 1, 1, 1, 1, 1)
