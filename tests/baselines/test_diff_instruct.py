"""Diff-Instruct: losses against methods.md's formulas written out; shared dropout masks; updates; recipes."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from sidbench_baselines import diff_instruct as di

from sidbench.errors import ConfigError
from sidbench.methods.base import Draws
from tests.baselines._recipes import finite_terms, short_run
from tests.methods._tiny import IMG, assert_grads_close, context, draws, grads, lam, one_hot, tiny_net, trio

B = 4
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def inputs(seed: int = 0, b: int = B):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, *IMG, generator=g)
    sigma = (torch.randn(b, 1, 1, 1, generator=g) * 1.2 - 1.2).exp()
    noise = torch.randn(b, *IMG, generator=g)
    return z, sigma, noise


@pytest.mark.parametrize("label_dim", [0, 10])
def test_generator_loss_and_gradient_equal_the_formula(label_dim):
    """methods.md: loss = sum_pixels (f_psi(x_t) - f_phi(x_t)) * x_g, both nets under no_grad, weight 1;
    so d loss / d theta = J_theta(x_g)^T (f_psi - f_phi): computed here with autograd.grad on x_g alone."""
    nets = trio(label_dim)
    labels = one_hot(B, label_dim) if label_dim else None
    z, sigma, noise = inputs()
    zeros = torch.zeros(B, 9)
    x_g = nets["generator"](1.0 * z, torch.ones(B), labels, augment_labels=zeros)
    x_t = x_g.detach() + sigma * noise
    with torch.no_grad():
        diff = (nets["fake_score"](x_t, sigma, labels, augment_labels=zeros)
                - nets["teacher"](x_t, sigma, labels, augment_labels=zeros))
    want_value = (diff * x_g.detach()).flatten(1).sum(1)
    params = [p for p in nets["generator"].parameters()]
    want = torch.autograd.grad(x_g, params, grad_outputs=diff / B)
    want = {n: g for (n, _), g in zip(nets["generator"].named_parameters(), want, strict=True)}

    x_o = di.generate_images(nets["generator"], z, labels, 1.0)
    ours = di.generator_loss(nets["teacher"], nets["fake_score"], x_o, sigma, noise, labels)
    assert ours.shape == (B,)
    torch.testing.assert_close(ours, want_value, rtol=1e-5, atol=1e-5)
    (ours.sum() / B).backward()
    assert_grads_close(grads(nets["generator"]), want)
    assert all(p.grad is None for p in nets["fake_score"].parameters())  # only through the multiplier x_g


def test_the_loss_is_linear_in_the_score_difference_and_zero_when_the_nets_agree():
    nets = trio()
    z, sigma, noise = inputs(1)
    x_g = di.generate_images(nets["generator"], z, None, 1.0).detach()
    same = di.generator_loss(nets["teacher"], nets["teacher"], x_g, sigma, noise)
    assert torch.equal(same, torch.zeros(B))
    ab = di.generator_loss(nets["teacher"], nets["fake_score"], x_g, sigma, noise)
    ba = di.generator_loss(nets["fake_score"], nets["teacher"], x_g, sigma, noise)
    torch.testing.assert_close(ab, -ba)


def test_teacher_and_fake_net_share_dropout_masks():
    """A fake net equal to the teacher, both in train mode with dropout 0.5: with shared masks the two outputs
    are equal, so the loss is exactly 0; without sharing the masks differ and the loss does not vanish."""
    teacher = tiny_net(0, dropout=0.5).train().requires_grad_(False)
    fake = copy.deepcopy(teacher)
    z, sigma, noise = inputs(2)
    x_g = torch.randn(B, *IMG, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(0)
    shared = di.generator_loss(teacher, fake, x_g, sigma, noise, share_dropout=True)
    assert torch.equal(shared, torch.zeros(B))
    torch.manual_seed(0)
    unshared = di.generator_loss(teacher, fake, x_g, sigma, noise, share_dropout=False)
    assert float(unshared.abs().max()) > 1e-3
    # the masks are the global RNG's (the trainer seeds it per update): same seed, same loss
    teacher2 = tiny_net(0, dropout=0.5).train()
    fake2 = tiny_net(1, dropout=0.5).train()
    torch.manual_seed(7)
    a = di.generator_loss(teacher2, fake2, x_g, sigma, noise)
    torch.manual_seed(7)
    b = di.generator_loss(teacher2, fake2, x_g, sigma, noise)
    assert torch.equal(a, b)


@pytest.mark.parametrize("label_dim", [0, 10])
def test_fake_score_loss_is_the_edm_loss(label_dim):
    nets = trio(label_dim)
    labels = one_hot(B, label_dim) if label_dim else None
    z, sigma, noise = inputs(3)
    x_g = di.generate_images(nets["generator"], z, labels, 1.0).detach()
    fake = nets["fake_score"]
    ours = di.fake_score_loss(fake, x_g, sigma, noise, labels)
    ours.sum().backward()
    ours_grads = grads(fake)
    fake.zero_grad(set_to_none=True)
    d = fake(x_g + sigma * noise, sigma, labels)
    want = (lam(sigma) * (d - x_g) ** 2).flatten(1).sum(1)
    want.sum().backward()
    torch.testing.assert_close(ours, want, rtol=1e-5, atol=1e-4)
    assert_grads_close(ours_grads, grads(fake))


def test_generator_update_draws_in_the_authors_order_and_restores_modes():
    nets = trio(dropout=0.0)
    s = di.DIFF_INSTRUCT.make_settings()
    out = di.generator_update(context(nets, s, b=B, seed=4))
    d = draws(B, 4)
    z, normal, noise = d.randn(*IMG), d.randn(1, 1, 1), d.randn(*IMG)
    x_g = di.generate_images(nets["generator"], z, None, 1.0)
    want = di.generator_loss(nets["teacher"], nets["fake_score"], x_g, (normal * 1.2 - 1.2).exp(), noise)
    torch.testing.assert_close(out.per_sample, want)
    assert out.scale == s.loss_scale == 1.0 and set(out.terms) == {"generator"}
    assert not nets["teacher"].training and not nets["fake_score"].training and nets["generator"].training


def test_fake_score_update_draws_z_sigma_noise():
    nets = trio()
    s = di.DIFF_INSTRUCT.make_settings({"augment_p": 0.0})
    out = di.fake_score_update(context(nets, s, b=B, seed=6))
    d = draws(B, 6)
    z, normal, noise = d.randn(*IMG), d.randn(1, 1, 1), d.randn(*IMG)
    with torch.no_grad():
        x_g = di.generate_images(nets["generator"], z, None, 1.0)
    want = di.fake_score_loss(nets["fake_score"], x_g, (normal * 1.2 - 1.2).exp(), noise)
    torch.testing.assert_close(out.per_sample, want)
    assert nets["fake_score"].training and not nets["generator"].training


def test_generator_loss_dropout_puts_both_nets_in_train_mode_only_when_set():
    """With dropout 0.5 in teacher and fake net (none in the generator), the loss depends on the global RNG
    (the trainer's dropout seed) when generator_loss_dropout is on, and not at all when it is off."""
    def losses(flag: bool) -> list[torch.Tensor]:
        nets = {"teacher": tiny_net(0, dropout=0.5).requires_grad_(False),
                "fake_score": tiny_net(1, dropout=0.5), "generator": tiny_net(2)}
        s = di.DIFF_INSTRUCT.make_settings({"generator_loss_dropout": flag})
        out = []
        for seed in (1, 2):
            torch.manual_seed(seed)
            out.append(di.generator_update(context(nets, s, b=B, seed=4)).per_sample.detach())
        assert not nets["teacher"].training and not nets["fake_score"].training
        return out

    on, off = losses(True), losses(False)
    assert not torch.equal(on[0], on[1])
    assert torch.equal(off[0], off[1])


def test_settings_are_the_authors_and_bad_values_are_refused():
    s = di.DIFF_INSTRUCT.make_settings()
    assert (s.sigma_init, s.P_mean, s.P_std, s.loss_scale, s.augment_p, s.generator_loss_dropout) == \
        (1.0, -1.2, 1.2, 1.0, 0.12, True)
    assert di.DIFF_INSTRUCT.needs_real_data is False
    assert [p.updates for p in di.DIFF_INSTRUCT.phases(s)] == [("fake_score", "generator")]
    for values, match in (({"sigma_init": 0.0}, "sigma_init"),
                          ({"generator_loss_dropout": "yes"}, "true or false"),
                          ({"augment_p": 2.0}, "augment_p"), ({"alpha": 1.0}, "no setting 'alpha'")):
        with pytest.raises(ConfigError, match=match):
            di.DIFF_INSTRUCT.make_settings(values)


def test_registered_through_the_entry_point():
    from sidbench.registry import METHODS

    assert METHODS.get("diff-instruct") is di.DIFF_INSTRUCT


# --- recipes ---------------------------------------------------------------------------------------------

def test_paper_recipes_carry_the_authors_settings_and_numbers():
    from sidbench.train.config import load_recipe

    c = load_recipe(RECIPES / "diff-instruct-cifar10-uncond.yaml")
    t, m = c.training, c.method_settings
    g, f = t.networks["generator"], t.networks["fake_score"]
    # the README command: --batch 128 --lr 1e-5 --glr 1e-5 --init_sigma 1.0 --fp16=0 --ls 1 --sgls 1;
    # di_train.py defaults: --dropout 0.13, --augment 0.12, --ema 0.5 Mimg, --duration 200 Mimg
    assert (t.batch, t.precision, t.duration_kimg) == (128, "fp32", 200_000)
    assert (g.lr, f.lr, g.betas, f.betas, g.dropout, f.dropout) == (1e-5, 1e-5, (0.0, 0.999), (0.0, 0.999),
                                                                     0.13, 0.13)
    assert (g.ema_halflife_kimg, g.ema_rampup) == (500, 0.05)
    assert (m.sigma_init, m.augment_p, m.loss_scale, m.fake_loss_scale) == (1.0, 0.12, 1.0, 1.0)
    (entry,) = c.expected
    assert (entry["value"], entry["source"], entry["arxiv"]) == (4.53, "paper", "2305.18455")
    inet = load_recipe(RECIPES / "diff-instruct-imagenet64-cond.yaml")
    (entry,) = inet.expected
    assert (entry["value"], entry["source"]) == (5.57, "secondary") and "ours" in entry["note"]
    assert "OUR RECIPE" in (RECIPES / "diff-instruct-imagenet64-cond.yaml").read_text()


def test_digits_recipe_trains_with_finite_losses(tmp_path):
    run = short_run(RECIPES / "diff-instruct-digits.yaml", tmp_path)
    assert run.finished and run.skipped_updates == 0
    assert {"fake_score/fake_score", "generator/generator"} <= set(finite_terms(run))
    from sidbench.nets.native import read_network_record

    record = read_network_record(run.product)
    assert record["role"] == "generator" and record["sigma_init"] == 1.0 and record["student_sigmas"] is None


def test_toy2d_recipe_trains_with_finite_losses(tmp_path):
    from tests.train._methods import save_teacher

    teacher = save_teacher(tmp_path / "teacher")
    run = short_run(RECIPES / "diff-instruct-toy2d.yaml", tmp_path, f"training.teacher={teacher}",
                 "training.batch=64", "training.batch_per_gpu=64", "training.duration_kimg=0.256",
                 "training.checkpoint_kimg=0.256", "training.log_every_kimg=0.128")
    assert run.finished and run.steps == 4
    finite_terms(run)


def test_draws_are_per_sample_so_a_split_batch_gives_the_same_losses():
    nets = trio()
    s = di.DIFF_INSTRUCT.make_settings({"augment_p": 0.0})

    def run(seeds: list[int]) -> torch.Tensor:
        ctx = context(nets, s, b=len(seeds))
        ctx.draws = Draws([torch.Generator().manual_seed(k) for k in seeds])
        return di.generator_update(ctx).per_sample

    whole = run([100, 101, 102, 103])
    torch.testing.assert_close(torch.cat([run([100, 101]), run([102, 103])]), whole, rtol=1e-5, atol=1e-6)
