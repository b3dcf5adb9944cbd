"""ADD-style distillation: losses against the formulas written out, R1 on closed forms, the discriminator's
frozen features and projection heads, the updates' draws, and short runs of the digits and toy2d recipes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from sidbench_baselines import add
from sidbench_baselines.add_features import Discriminator, ProjectionHead, build_discriminator

from sidbench.errors import AssetError, ConfigError
from sidbench.methods.base import BuildInputs
from tests.baselines._recipes import finite_terms, short_run
from tests.methods._tiny import IMG, assert_grads_close, context, draws, grads, one_hot, tiny_net

B = 4
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _settings(**values):
    return add.ADD.make_settings(values)


def _disc(teacher, label_dim=0, **values):
    inputs = BuildInputs(teacher=teacher, settings=_settings(**values), img_shape=IMG, label_dim=label_dim)
    torch.manual_seed(0)
    return build_discriminator(None, inputs)


# --- pure pieces ------------------------------------------------------------------------------------------

def test_distillation_weights_are_the_closed_forms():
    sigma = torch.tensor([0.01, 0.3, 0.572, 1.0, 4.0, 80.0])
    alpha = 1 / torch.sqrt(1 + sigma**2)
    torch.testing.assert_close(add.distillation_weight(sigma, "exponential"), alpha)
    sds = sigma / (2 * (1 + sigma**2))  # alpha * sigma_vp / 2 with sigma_vp = sigma * alpha
    torch.testing.assert_close(add.distillation_weight(sigma, "sds"), sds)
    nfsd = add.distillation_weight(sigma, "nfsd")
    torch.testing.assert_close(nfsd[:3], sds[:3])
    assert torch.equal(nfsd[3:], torch.zeros(3))
    with pytest.raises(ConfigError, match="unknown weighting"):
        add.distillation_weight(sigma, "lpips")


@pytest.mark.parametrize("weighting", ["exponential", "sds"])
@pytest.mark.parametrize("label_dim", [0, 10])
def test_distillation_loss_and_gradient_equal_the_formula(weighting, label_dim):
    """loss_i = c(sigma_i) * ||x_s - sg(D(x_s + sigma noise))||^2 (sum over C,H,W); its gradient is
    J(x_s)^T [2 c (x_s - x0) / B], computed here with autograd.grad on x_s alone."""
    teacher, student = tiny_net(0, label_dim).requires_grad_(False), tiny_net(2, label_dim)
    labels = one_hot(B, label_dim) if label_dim else None
    g = torch.Generator().manual_seed(1)
    x_in = torch.randn(B, *IMG, generator=g)
    s = torch.tensor([80.0, 4.08, 1.61, 0.693]).reshape(-1, 1, 1, 1)
    sigma_t = torch.tensor([0.05, 0.5, 2.0, 20.0]).reshape(-1, 1, 1, 1)
    noise = torch.randn(B, *IMG, generator=g)
    zeros = torch.zeros(B, 9)
    x_s = student(x_in, s, labels, augment_labels=zeros)
    with torch.no_grad():
        x0 = teacher(x_s + sigma_t * noise, sigma_t, labels, augment_labels=zeros)
    a = 1 / torch.sqrt(1 + sigma_t.flatten() ** 2)
    c = a if weighting == "exponential" else a * (sigma_t.flatten() * a) / 2
    want = c * ((x_s.detach() - x0) ** 2).flatten(1).sum(1)
    want_grads = torch.autograd.grad(x_s, list(student.parameters()),
                                     grad_outputs=2 * c.reshape(-1, 1, 1, 1) * (x_s.detach() - x0) / B)
    want_grads = {n: w for (n, _), w in zip(student.named_parameters(), want_grads, strict=True)}

    x_o = add.student_images(student, x_in, s, labels)
    ours = add.distillation_loss(teacher, x_o, sigma_t, noise, labels, weighting)
    torch.testing.assert_close(ours, want, rtol=1e-5, atol=1e-7)
    (ours.sum() / B).backward()
    assert_grads_close(grads(student), want_grads)


def test_student_input_drops_the_image_at_the_top_level_only():
    x, z = torch.ones(2, *IMG), torch.full((2, *IMG), 2.0)
    sigma = torch.tensor([80.0, 1.0]).reshape(-1, 1, 1, 1)
    out = add.student_input(x, z, sigma, torch.tensor([True, False]))
    assert torch.equal(out[0], torch.full(IMG, 160.0)) and torch.equal(out[1], torch.full(IMG, 3.0))


def test_hinge_losses_are_the_closed_forms():
    logits = torch.tensor([[2.0, 0.5, -1.0], [-3.0, 0.0, 1.0]])
    real = torch.tensor([(0 + 0.5 + 2) / 3, (4 + 1 + 0) / 3])  # mean relu(1 - l)
    fake = torch.tensor([(3 + 1.5 + 0) / 3, (0 + 1 + 2) / 3])  # mean relu(1 + l)
    torch.testing.assert_close(add.hinge(logits, real=True), real)
    torch.testing.assert_close(add.hinge(logits, real=False), fake)


class _Quadratic(torch.nn.Module):
    """D(x) = [0.5 sum(a x^2), sum(w x)] per sample: grad of the mean logit is (a x + w) / 2."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.a = torch.nn.Parameter(torch.rand(IMG, generator=g) + 0.5)
        self.w = torch.nn.Parameter(torch.randn(IMG, generator=g))

    def forward(self, x, labels=None):
        return torch.stack([0.5 * (self.a * x**2).flatten(1).sum(1), (self.w * x).flatten(1).sum(1)], dim=1)


def test_r1_penalty_is_the_closed_form_and_trains_the_discriminator():
    disc = _Quadratic()
    x = torch.randn(B, *IMG, generator=torch.Generator().manual_seed(4))
    r1 = add.r1_penalty(disc, x)
    grad = (disc.a.detach() * x + disc.w.detach()) / 2
    torch.testing.assert_close(r1, grad.square().flatten(1).sum(1))
    r1.sum().backward()  # d/dw sum_i ||(a x_i + w)/2||^2 = sum_i (a x_i + w) / 2
    torch.testing.assert_close(disc.w.grad, ((disc.a.detach() * x + disc.w.detach()) / 2).sum(0))
    assert not x.requires_grad  # the real images themselves are left alone
    linear = torch.nn.Linear(math.prod(IMG), 1, bias=False)
    r1 = add.r1_penalty(lambda y, labels=None: linear(y.flatten(1)), x)
    torch.testing.assert_close(r1, torch.full((B,), float(linear.weight.detach().square().sum())))


def test_discriminator_losses_and_the_generator_term():
    disc = _Quadratic()
    g = torch.Generator().manual_seed(5)
    fake, real = torch.randn(B, *IMG, generator=g), torch.randn(B, *IMG, generator=g)
    r, f, r1 = add.discriminator_losses(disc, fake.requires_grad_(True), real)
    torch.testing.assert_close(r, torch.relu(1 - disc(real)).mean(1))
    torch.testing.assert_close(f, torch.relu(1 + disc(fake)).mean(1))
    torch.testing.assert_close(r1, add.r1_penalty(disc, real))
    (r + f).sum().backward()
    assert fake.grad is None  # sg(x_fake) in the discriminator's loss
    x_s = torch.randn(B, *IMG, generator=g, requires_grad=True)
    adv = add.generator_adversarial_loss(disc, x_s)
    torch.testing.assert_close(adv, -disc(x_s).mean(1))


# --- the discriminator --------------------------------------------------------------------------------------

def test_projection_head_is_the_formula():
    head = ProjectionHead(5, channels=6, label_dim=3)
    feats = torch.randn(2, 5, 2, 2, generator=torch.Generator().manual_seed(6))
    labels = torch.eye(3)[[0, 2]]
    phi = head.body(feats)
    want = head.out(phi) + (head.embed(labels)[:, :, None, None] * phi).sum(1, keepdim=True) / math.sqrt(6)
    torch.testing.assert_close(head(feats, labels), want.flatten(1))
    assert not torch.equal(head(feats, labels), head(feats, torch.eye(3)[[1, 1]]))


def test_teacher_features_are_referenced_frozen_and_not_saved():
    teacher = tiny_net(0, 10).requires_grad_(False)
    disc = _disc(teacher, label_dim=10)
    assert isinstance(disc, Discriminator)
    assert all(k.startswith("heads.") for k in disc.state_dict())
    assert {n for n, p in disc.named_parameters() if p.requires_grad} == set(disc.state_dict())
    x = torch.randn(B, *IMG, generator=torch.Generator().manual_seed(7))
    feats = teacher.encoder_features(x, torch.full((B, 1, 1, 1), 0.5), None, augment_labels=torch.zeros(B, 9))
    labels = one_hot(B, 10)
    torch.testing.assert_close(disc(x, labels), disc.heads[0](feats, labels))
    disc.train()
    assert not teacher.training
    again = _disc(teacher, label_dim=10)  # the trainer seeds the build: same seed, same heads
    assert all(torch.equal(a, b) for a, b in zip(disc.state_dict().values(), again.state_dict().values(),
                                                 strict=True))


def test_dinov2_features_from_local_weights_and_a_clear_error_without(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                          image_size=16, patch_size=8)
    Dinov2Model(config).save_pretrained(tmp_path / "dino")
    disc = _disc(tiny_net(0), feature_network="dinov2", feature_weights=str(tmp_path / "dino"),
                 feature_layers=[2, 4])
    assert len(disc.heads) == 2
    frozen = {n for n, p in disc.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("features.") for n in frozen)
    disc.train()
    assert not disc.features.training
    x = torch.randn(B, *IMG, generator=torch.Generator().manual_seed(8))
    assert disc(x).shape == (B, 2 * 4)  # two heads x (16/8)^2 patch tokens
    assert add.r1_penalty(disc, x).shape == (B,)
    with pytest.raises(ConfigError, match="needs feature_weights"):
        _disc(tiny_net(0), feature_network="dinov2")
    with pytest.raises(AssetError, match="DINOv2 weights not found"):
        _disc(tiny_net(0), feature_network="dinov2", feature_weights=str(tmp_path / "nothing"))
    with pytest.raises(ConfigError, match="feature_layers"):
        _disc(tiny_net(0), feature_network="dinov2", feature_weights=str(tmp_path / "dino"),
              feature_layers=[9])


# --- settings and updates ---------------------------------------------------------------------------------

def test_settings_defaults_and_refusals():
    s = _settings()
    assert (s.student_sigmas, s.sigma_init, s.distill_weight, s.r1_weight, s.weighting) == \
        ((80.0, 4.08, 1.61, 0.693), 80.0, 2.5, 1e-5, "exponential")
    assert add.ADD.needs_real_data
    assert [p.updates for p in add.ADD.phases(s)] == [("discriminator", "generator")]
    assert _settings(student_sigmas=[10, 1]).student_sigmas == (10.0, 1.0)
    for values, match in (({"student_sigmas": [1.0, 2.0]}, "decrease strictly"),
                          ({"student_sigmas": []}, "non-empty"),
                          ({"student_sigmas": [80, "x"]}, "non-empty"), ({"weighting": "l2"}, "weighting"),
                          ({"feature_network": "clip"}, "feature_network"),
                          ({"r1_weight": -1.0}, "r1_weight"), ({"pure_noise_top": 1}, "true or false")):
        with pytest.raises(ConfigError, match=match):
            _settings(**values)


def _nets(label_dim=0):
    teacher = tiny_net(0, label_dim).requires_grad_(False)
    return {"teacher": teacher, "generator": tiny_net(2, label_dim),
            "discriminator": _disc(teacher, label_dim)}


def _real(b=B):
    return torch.randn(b, *IMG, generator=torch.Generator().manual_seed(9)).tanh()


def test_generator_update_is_the_formula_with_its_draw_order():
    nets, s = _nets(10), _settings()
    labels, real = one_hot(B, 10), _real()
    out = add.generator_update(context(nets, s, b=B, seed=3, labels=labels, images=real, label_dim=10))
    d = draws(B, 3)
    index, z = d.randint(4, 1).flatten(), d.randn(*IMG)
    u, noise = d.rand(1, 1, 1), d.randn(*IMG)
    sigma = torch.tensor(s.student_sigmas)[index].reshape(-1, 1, 1, 1)
    x_in = torch.where((index == 0).reshape(-1, 1, 1, 1), sigma * z, real + sigma * z)
    x_s = nets["generator"](x_in, sigma, labels, augment_labels=torch.zeros(B, 9))
    t = u  # teacher_tmax 1000: t = u; sigma_t on EDM's rho-7 curve from 0.002 (t = 0) to 80 (t = 1)
    sigma_t = (80 ** (1 / 7) + (1 - t) * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    distill = add.distillation_loss(nets["teacher"], x_s, sigma_t, noise, labels)
    adversarial = -nets["discriminator"](x_s, labels).mean(1)
    torch.testing.assert_close(out.per_sample, 2.5 * distill + adversarial)
    assert set(out.terms) == {"distill", "adversarial"}
    assert nets["generator"].training and not nets["discriminator"].training and not nets["teacher"].training


def test_discriminator_update_is_hinge_plus_r1_on_the_students_images():
    nets, s = _nets(), _settings(r1_weight=0.5)
    real = _real()
    out = add.discriminator_update(context(nets, s, b=B, seed=5, images=real))
    d = draws(B, 5)
    index, z = d.randint(4, 1).flatten(), d.randn(*IMG)
    sigma = torch.tensor(s.student_sigmas)[index].reshape(-1, 1, 1, 1)
    x_in = torch.where((index == 0).reshape(-1, 1, 1, 1), sigma * z, real + sigma * z)
    with torch.no_grad():
        x_s = nets["generator"].eval()(x_in, sigma, None, augment_labels=torch.zeros(B, 9))
    disc = nets["discriminator"]
    want = (torch.relu(1 - disc(real)).mean(1) + torch.relu(1 + disc(x_s)).mean(1)
            + 0.5 * add.r1_penalty(disc, real))
    torch.testing.assert_close(out.per_sample, want)
    assert set(out.terms) == {"d_real", "d_fake", "r1"}
    out.per_sample.sum().backward()
    assert all(p.grad is None for p in nets["generator"].parameters())
    assert any(p.grad is not None for p in disc.parameters())


def test_without_real_images_the_update_says_so():
    nets = _nets()
    with pytest.raises(ConfigError, match="needs the suite's real images"):
        add.generator_update(context(nets, _settings(), b=B))


# --- recipes ------------------------------------------------------------------------------------------------

def test_digits_recipe_trains_and_its_product_records_the_student_levels(tmp_path):
    from safetensors.torch import load_file

    from sidbench.nets.native import read_network_record

    run = short_run(RECIPES / "add-digits.yaml", tmp_path)
    assert run.finished and run.skipped_updates == 0
    assert {"discriminator/d_real", "discriminator/r1", "generator/distill", "generator/adversarial"} <= \
        set(finite_terms(run))
    record = read_network_record(run.product)
    assert record["role"] == "generator" and record["sigma_init"] == 80.0
    assert record["student_sigmas"] == [80.0, 4.08, 1.61, 0.693]
    saved = load_file(str(run.checkpoint / "networks" / "discriminator.safetensors"))
    assert saved and all(k.startswith("heads.") for k in saved)  # the frozen teacher is not duplicated


def test_toy2d_recipe_trains_with_finite_losses(tmp_path):
    from tests.train._methods import save_teacher

    teacher = save_teacher(tmp_path / "teacher")
    run = short_run(RECIPES / "add-toy2d.yaml", tmp_path, f"training.teacher={teacher}",
                 "training.batch=64", "training.batch_per_gpu=64", "training.duration_kimg=0.256",
                 "training.checkpoint_kimg=0.256", "training.log_every_kimg=0.128")
    assert run.finished and run.steps == 4
    finite_terms(run)


def test_recipes_mark_recalled_and_own_settings():
    from sidbench.train.config import load_recipe

    for name in ("add-digits", "add-toy2d", "add-cifar10-uncond", "add-imagenet64-cond"):
        text = (RECIPES / f"{name}.yaml").read_text()
        config = load_recipe(RECIPES / f"{name}.yaml")
        assert config.method == "add" and config.expected == ()  # ADD reports no number on these suites
        assert "no official training code" in text.lower()
        for key in ("student_sigmas", "distill_weight", "r1_weight", "weighting", "pure_noise_top"):
            line = next(x for x in text.splitlines() if x.strip().startswith(f"{key}:"))
            assert "[recalled]" in line, line
        assert config.method_settings == add.ADD.make_settings()
