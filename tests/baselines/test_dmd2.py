"""DMD2 (sidbench_baselines.dmd2): the GAN terms against their formulas, the head, and the training rules.

Oracles written out here: the authors' head layer by layer at 8x8; the generator's GAN loss
-log(sigmoid(l)) and the discriminator's -log(1 - sigmoid(l_fake)) - log(sigmoid(l_real)) on logits
computed from the fake net's bottleneck; the updates' weighted sums. Then the trainer applies the 5:1
rule (counted optimizer steps per network, in order), the 500-step warm-up (the learning rate each
optimizer step used) and the GAN weights; and the recipes' numbers are methods.md's.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from sidbench_baselines import dmd, dmd2
from sidbench_baselines.karras import karras_grid

from sidbench.errors import ConfigError
from tests.methods._tiny import IMG, assert_grads_close, context, grads, one_hot, tiny_net, zero_grads

B = 4


def _headed(seed=1, label_dim=0):
    from sidbench.methods.base import BuildInputs

    torch.manual_seed(seed)
    base = tiny_net(seed, label_dim)
    return dmd2.build_fake_score(base, BuildInputs(None, dmd2.Settings(), IMG, label_dim))


# --- the head -----------------------------------------------------------------------------------------

def test_the_head_at_8x8_is_the_authors_branch():
    head = dmd2.gan_head(768, 8)
    convs = [(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)
             for m in head if isinstance(m, torch.nn.Conv2d)]
    assert convs == [(768, 768, (4, 4), (2, 2), (1, 1)), (768, 768, (4, 4), (4, 4), (0, 0)),
                     (768, 1, (1, 1), (1, 1), (0, 0))]
    assert [type(m).__name__ for m in head] == ["Conv2d", "GroupNorm", "SiLU", "Conv2d", "GroupNorm", "SiLU",
                                                "Conv2d"]
    assert all(m.num_groups == 32 for m in head if isinstance(m, torch.nn.GroupNorm))
    assert head(torch.randn(2, 768, 8, 8)).shape == (2, 1, 1, 1)


@pytest.mark.parametrize("channels, size", [(32, 4), (48, 2), (16, 1), (64, 5)])
def test_the_head_ends_at_one_logit_on_other_bottlenecks(channels, size):
    head = dmd2.gan_head(channels, size)
    assert head(torch.randn(3, channels, size, size)).shape == (3, 1, 1, 1)
    norms = [m for m in head if isinstance(m, torch.nn.GroupNorm)]
    assert all(channels % m.num_groups == 0 and channels // m.num_groups >= 8 for m in norms)
    logits = head(torch.randn(5, channels, size, size)).flatten()
    assert float(logits.detach().std()) > 0  # not a constant: no group of one channel on the 1x1 map


def test_the_built_fake_net_is_the_denoiser_with_a_head_on_its_bottleneck():
    net = _headed()
    base = tiny_net(1)
    x, sigma = torch.randn(B, *IMG), torch.full((B, 1, 1, 1), 3.0)
    assert isinstance(net, dmd2.GANHeaded) and net.img_channels == 3 and net.label_dim == 0
    torch.testing.assert_close(net(x, sigma), base(x, sigma))  # called as the EDM net it wraps
    feats = base.encoder_features(x, sigma)
    assert feats.shape[1:] == (32, 4, 4)
    torch.testing.assert_close(net.logits(x, sigma), net.head(feats).flatten())
    assert set(net.state_dict()) == {f"net.{k}" for k in base.state_dict()} | {f"head.{k}" for k in
                                                                                net.head.state_dict()}
    from sidbench.methods.base import BuildInputs

    plain = dmd2.build_fake_score(base, BuildInputs(None, dmd2.Settings(gan_classifier=False), IMG, 0))
    assert plain is base


# --- the GAN losses -----------------------------------------------------------------------------------

def _gan_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    sigma = karras_grid()[torch.randint(1000, (B, 1, 1, 1), generator=g)]
    return sigma, torch.randn(B, *IMG, generator=g)


@pytest.mark.parametrize("label_dim", [0, 10])
def test_generator_gan_loss_value_and_generator_gradient_are_the_formula(label_dim):
    disc = _headed(1, label_dim).requires_grad_(False)
    gen = tiny_net(2, label_dim)
    labels = one_hot(B, label_dim) if label_dim else None
    z = torch.randn(B, *IMG, generator=torch.Generator().manual_seed(4))
    sigma, noise = _gan_inputs()
    loss = dmd2.gan_generator_loss(disc, dmd.generate_images(gen, z, labels), sigma, noise, labels)
    loss.backward()
    ours = grads(gen)
    zero_grads(gen)
    x = gen(80 * z, torch.full((B,), 80.0), labels)
    logit = disc.head(disc.net.encoder_features(x + sigma * noise, sigma, labels)).flatten()
    expected = -torch.log(torch.sigmoid(logit)).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)
    expected.backward()
    assert_grads_close(ours, grads(gen))
    assert all(p.grad is None for p in disc.parameters())


def test_discriminator_loss_value_and_gradient_are_the_formula_on_detached_images():
    disc = _headed(1, 10)
    labels, real_labels = one_hot(B, 10, 1), one_hot(B, 10, 2)
    x_fake = torch.randn(B, *IMG, requires_grad=True)
    x_real = torch.randn(B, *IMG).tanh()
    (s_f, n_f), (s_r, n_r) = _gan_inputs(1), _gan_inputs(2)
    loss = dmd2.gan_discriminator_loss(disc, x_fake, x_real, s_f, n_f, s_r, n_r, labels, real_labels)
    loss.backward()
    assert x_fake.grad is None
    ours = grads(disc)
    zero_grads(disc)
    lf = disc.head(disc.net.encoder_features(x_fake.detach() + s_f * n_f, s_f, labels)).flatten()
    lr = disc.head(disc.net.encoder_features(x_real + s_r * n_r, s_r, real_labels)).flatten()
    expected = (-torch.log(1 - torch.sigmoid(lf)) - torch.log(torch.sigmoid(lr))).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)
    expected.backward()
    assert_grads_close(ours, grads(disc))
    assert any(k.startswith("head.") for k in ours) and any(k.startswith("net.") for k in ours)


# --- the updates: weights applied, draws in order ------------------------------------------------------

def _nets(label_dim=10):
    return {"teacher": tiny_net(0, label_dim).requires_grad_(False), "fake_score": _headed(1, label_dim),
            "generator": tiny_net(2, label_dim)}


@pytest.mark.parametrize("weight", [3e-3, 0.5])
def test_generator_update_is_dm_plus_the_gan_weight_times_gan(weight):
    nets = _nets()
    nets["fake_score"].requires_grad_(False)
    s = dmd2.Settings(gen_cls_loss_weight=weight)
    out = dmd2.generator_update(context(nets, s, b=B, label_dim=10))
    d = context(nets, s, b=B, label_dim=10).draws
    z, labels = d.randn(*IMG), torch.nn.functional.one_hot(d.randint(10), 10).float()
    idx, noise = d.randint(961, 1, 1, 1) + 20, d.randn(*IMG)
    g_idx, g_noise = d.randint(1000, 1, 1, 1), d.randn(*IMG)
    x_g = dmd.generate_images(nets["generator"], z, labels)
    dm = dmd.generator_loss(nets["teacher"], nets["fake_score"], x_g, karras_grid()[idx], noise, labels,
                            reduction="none")
    gan = dmd2.gan_generator_loss(nets["fake_score"], x_g, karras_grid()[g_idx], g_noise, labels,
                                  reduction="none")
    torch.testing.assert_close(out.terms["dm"], dm)
    torch.testing.assert_close(out.terms["gan"], gan)
    torch.testing.assert_close(out.per_sample, dm + weight * gan)


def test_fake_update_is_fake_plus_the_cls_weight_times_the_discriminator_on_real_images():
    nets = _nets()
    real, real_labels = torch.randn(B, *IMG).tanh(), one_hot(B, 10, 5)
    s = dmd2.Settings(cls_loss_weight=0.25)
    ctx = context(nets, s, b=B, label_dim=10, images=real, labels=real_labels)
    out = dmd2.fake_score_update(ctx)
    d = context(nets, s, b=B, label_dim=10).draws
    z, labels = d.randn(*IMG), torch.nn.functional.one_hot(d.randint(10), 10).float()
    idx, noise = d.randint(1000, 1, 1, 1), d.randn(*IMG)
    r_idx, r_noise = d.randint(1000, 1, 1, 1), d.randn(*IMG)
    f_idx, f_noise = d.randint(1000, 1, 1, 1), d.randn(*IMG)
    with torch.no_grad():
        x_g = dmd.generate_images(nets["generator"], z, labels)
    grid = karras_grid()
    fake = dmd.fake_score_loss(nets["fake_score"], x_g, grid[idx], noise, labels, reduction="none")
    disc = dmd2.gan_discriminator_loss(nets["fake_score"], x_g, real, grid[f_idx], f_noise, grid[r_idx],
                                       r_noise, labels, real_labels, reduction="none")
    torch.testing.assert_close(out.per_sample, fake + 0.25 * disc)
    torch.testing.assert_close(out.terms["discriminator"], disc)
    with pytest.raises(ConfigError, match="needs the suite's real images"):
        dmd2.fake_score_update(context(nets, s, b=B, label_dim=10, labels=real_labels))


def test_without_the_gan_only_the_dm_and_fake_terms_remain():
    nets = _nets()
    s = dmd2.Settings(gan_classifier=False)
    assert set(dmd2.generator_update(context(nets, s, b=B, label_dim=10)).terms) == {"dm"}
    assert set(dmd2.fake_score_update(context(nets, s, b=B, label_dim=10)).terms) == {"fake_score"}


def test_settings_are_checked():
    from sidbench.registry import METHODS

    method = METHODS.get("dmd2")
    s = method.make_settings({})
    assert (s.dfake_gen_update_ratio, s.gen_cls_loss_weight, s.cls_loss_weight) == (5, 3e-3, 1e-2)
    assert s.sigma_init == 80.0
    with pytest.raises(ConfigError, match="dfake_gen_update_ratio"):
        method.make_settings({"dfake_gen_update_ratio": 0})
    with pytest.raises(ConfigError, match="gan_classifier"):
        method.make_settings({"gan_classifier": "yes"})
    with pytest.raises(ConfigError, match="diffusion_gan_max_timestep"):
        method.make_settings({"diffusion_gan_max_timestep": 1001})
    assert method.phases(s)[0].updates == ("generator", "fake_score")
    assert dict(method.phases(s)[0].every) == {"generator": 5}
    assert [(n.name, n.ema) for n in method.networks] == [("fake_score", False), ("generator", False)]
    assert method.needs_real_data


# --- the trainer applies the 5:1 rule, the warm-up and the GAN -----------------------------------------

@pytest.fixture(scope="module")
def toy_teacher(tmp_path_factory):
    from tests.train._methods import save_teacher

    return save_teacher(tmp_path_factory.mktemp("toy") / "teacher")


def _toy_config(teacher, steps, **training):
    from sidbench.train import load_recipe
    from tests.test_recipes import RECIPES

    sets = [f"training.teacher={teacher}", f"training.duration_kimg={steps * 16 / 1000}", "training.batch=16",
            "training.batch_per_gpu=16", "training.checkpoint_kimg=null", "training.log_every_kimg=0.016"]
    for net in ("generator", "fake_score"):  # the authors' optimiser, and their 500-step warm-up
        key = f"training.networks.{net}"
        sets += [f"{key}.optimizer=adamw", f"{key}.betas=[0.9,0.999]", f"{key}.weight_decay=0.01",
                 f"{key}.warmup_kimg={500 * 16 / 1000}"]
    sets += [f"{k}={v}" for k, v in training.items()]
    return load_recipe(RECIPES / "dmd2-toy2d.yaml", sets)


def test_the_trainer_runs_the_generator_every_5th_step_first_with_the_warm_up(toy_teacher, tmp_path,
                                                                              monkeypatch):
    from sidbench.train import train
    from sidbench.train.steps import Stepper

    order, lrs = [], {}
    real_run = Stepper.run_update

    def run_update(self, step, name, data):
        order.append((step, name))
        return real_run(self, step, name, data)

    real_step = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        name = "generator" if order[-1][1] == "generator" else "fake_score"
        lrs.setdefault(name, []).append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Stepper, "run_update", run_update)
    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    result = train(_toy_config(toy_teacher, 11), tmp_path / "run", progress=False)
    assert result.steps == 11 and result.skipped_updates == 0
    assert [s for s, n in order if n == "generator"] == [0, 5, 10]
    assert [s for s, n in order if n == "fake_score"] == list(range(11))
    for s in (0, 5, 10):  # the generator first, then the fake net, within a step
        assert order.index((s, "generator")) + 1 == order.index((s, "fake_score"))
    # constant_with_warmup over 500 iterations: lr * step / 500 for both networks, stepped every iteration
    assert lrs["generator"] == pytest.approx([3e-4 * s / 500 for s in (0, 5, 10)], rel=1e-12)
    assert lrs["fake_score"] == pytest.approx([3e-4 * s / 500 for s in range(11)], rel=1e-12)
    from safetensors.torch import load_file

    adam = load_file(str(result.checkpoint / "optimizers.safetensors"))
    assert float(adam["generator/0/step"]) == 3 and float(adam["fake_score/0/step"]) == 11
    assert any(k.startswith("head.") for k in load_file(str(result.checkpoint / "networks" /
                                                             "fake_score.safetensors")))


def test_the_gan_weight_reaches_the_generator_gradient(toy_teacher, tmp_path):
    """Two runs differing only in gen_cls_loss_weight end with different generators."""
    from safetensors.torch import load_file

    from sidbench.train import train

    ends = {}
    for w in (0.0, 1.0):
        config = _toy_config(toy_teacher, 2, **{"method_settings.gen_cls_loss_weight": w,
                                                "training.networks.generator.warmup_kimg": 0})
        ends[w] = load_file(str(train(config, tmp_path / f"w{w}", progress=False).checkpoint / "networks" /
                                "generator.safetensors"))
    assert any(not torch.equal(ends[0.0][k], ends[1.0][k]) for k in ends[0.0])


def test_dmd2_toy2d_recipe_trains_with_finite_losses(toy_teacher, tmp_path):
    from sidbench.train import load_recipe, train
    from sidbench.train.monitor import read_jsonl
    from tests.test_recipes import RECIPES

    config = load_recipe(RECIPES / "dmd2-toy2d.yaml", [f"training.teacher={toy_teacher}"])
    result = train(config, tmp_path / "run", progress=False, max_steps=30)
    rows = read_jsonl(tmp_path / "run" / "log.jsonl")
    assert result.steps == 30 and result.skipped_updates == 0
    terms = {k for row in rows for k in row["terms"]}
    assert {"generator/dm", "generator/gan", "fake_score/discriminator", "fake_score/fake_score"} <= terms
    assert all(math.isfinite(v) for row in rows for v in row["terms"].values())


def test_dmd2_digits_recipe_trains_with_finite_losses(tmp_path):
    from sidbench.train import load_recipe, train
    from sidbench.train.monitor import read_jsonl
    from tests.test_recipes import RECIPES

    config = load_recipe(RECIPES / "dmd2-digits.yaml", ["training.batch=8", "training.batch_per_gpu=8"])
    result = train(config, tmp_path / "run", progress=False, max_steps=6)
    rows = read_jsonl(tmp_path / "run" / "log.jsonl")
    assert result.steps == 6 and result.skipped_updates == 0
    assert all(math.isfinite(v) for row in rows for v in row["terms"].values())


def test_init_fake_score_starts_the_fake_net_from_a_no_gan_run(toy_teacher, tmp_path):
    """The 1.28 recipe's resume: the fake net (not its fresh head) comes from the earlier run's checkpoint."""
    from safetensors.torch import load_file

    from sidbench.train import train
    from sidbench.train.networks import build_networks

    nogan = train(_toy_config(toy_teacher, 3, **{"method_settings.gan_classifier": "false"}),
                  tmp_path / "nogan", progress=False)
    saved = load_file(str(nogan.checkpoint / "networks" / "fake_score.safetensors"))
    assert not any(k.startswith("head.") for k in saved)
    config = _toy_config(toy_teacher, 3, **{"method_settings.init_fake_score": str(tmp_path / "nogan")})
    nets = build_networks(config, config.get_method(), torch.device("cpu"), str(toy_teacher))
    fake = nets.nets["fake_score"]
    assert isinstance(fake, dmd2.GANHeaded)
    assert all(torch.equal(fake.net.state_dict()[k], v) for k, v in saved.items())
    bad = dataclasses.replace(config, method_settings=dataclasses.replace(config.method_settings,
                                                                          init_fake_score=str(tmp_path)))
    from sidbench.errors import AssetError

    with pytest.raises(AssetError, match="init_fake_score"):
        build_networks(bad, bad.get_method(), torch.device("cpu"), str(toy_teacher))


# --- the recipes carry methods.md's numbers ------------------------------------------------------------

# methods.md, DMD2 ImageNet64: AdamW (0.9, 0.999), wd 0.01, lr 2e-6 both, 500-step warm-up, grad-norm clip
# 10, bf16, no EMA, batch 280 (40 x 7 GPUs), ~200k iterations; ratio 5; GAN weights 3e-3 / 1e-2, diffusion
# GAN over U{0..999}; FID 1.51 (this recipe), 2.61 (no GAN, 410k), 1.28 (the 2.61 run resumed at lr 5e-7
# with the GAN on, +140k).
IMAGENET = {"dmd2-imagenet64-cond": (2e-6, 200_000, True, 1.51),
            "dmd2-imagenet64-cond-nogan": (2e-6, 410_000, False, 2.61),
            "dmd2-imagenet64-cond-resume": (5e-7, 140_000, True, 1.28)}


@pytest.mark.parametrize("name", sorted(IMAGENET))
def test_imagenet_recipes_are_methods_md(name):
    from sidbench.train import load_recipe
    from tests.test_recipes import RECIPES

    lr, iterations, gan, fid = IMAGENET[name]
    config = load_recipe(RECIPES / f"{name}.yaml")
    t, m = config.training, config.method_settings
    assert (config.suite, config.method) == ("imagenet64-cond", "dmd2")
    assert (t.batch, t.batch_per_gpu, t.precision) == (280, 40, "bf16")
    assert t.total_steps == iterations
    for net in t.networks.values():
        assert (net.optimizer, net.lr, net.betas) == ("adamw", lr, (0.9, 0.999))
        assert (net.weight_decay, net.grad_clip_norm) == (0.01, 10.0)
        assert net.warmup_kimg * 1000 / t.batch == 500 and net.dropout == 0.0
    assert (m.sigma_init, m.dfake_gen_update_ratio, m.gan_classifier, m.diffusion_gan) == (80.0, 5, gan, gan)
    if gan:
        assert (m.gen_cls_loss_weight, m.cls_loss_weight, m.diffusion_gan_max_timestep) == (3e-3, 1e-2, 1000)
    resumed = name.endswith("-resume")
    assert (t.init_generator is not None, m.init_fake_score is not None) == (resumed, resumed)
    if resumed:
        assert "dmd2-imagenet64-cond-nogan" in t.init_generator == m.init_fake_score
    (entry,) = config.expected
    assert (entry["metric"], entry["value"], entry["arxiv"]) == ("fid", fid, "2405.14867")
    assert entry["source"] == "code"
    assert config.hardware["gpus"] == 7 and "nproc_per_node 7" in config.hardware["source"]


@pytest.mark.parametrize("name", ["dmd2-digits", "dmd2-toy2d", "dmd-digits", "dmd-toy2d"])
def test_laptop_recipes_keep_the_method_settings_and_report_no_paper_number(name):
    from sidbench.train import load_recipe
    from tests.test_recipes import RECIPES

    config = load_recipe(RECIPES / f"{name}.yaml")
    assert config.expected == () and config.method_settings.sigma_init == 80.0
    assert config.training.total_steps == (100 if name.endswith("digits") else 600)
    if config.method == "dmd2":
        s = config.method_settings
        assert (s.dfake_gen_update_ratio, s.gen_cls_loss_weight, s.cls_loss_weight) == (5, 3e-3, 1e-2)
    else:
        s = config.method_settings
        assert (s.regression_weight, s.regression_distance) == (0.25, "l2")
