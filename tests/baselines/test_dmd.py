"""DMD (sidbench_baselines.dmd): each loss against its formula written out here, on tiny EDM networks.

Oracles: the Karras grid in float64 closed form; the distribution-matching loss's value
0.5 * mean(grad^2) and its generator gradient J^T grad / (b*C*H*W) (autograd of the surrogate
sum(x_g * sg(grad)) / N), with grad = (f_psi - f_phi) / mean|x_g - f_phi|; the fake loss
mean(lambda(sigma) (f_psi(x + sigma n) - x)^2) with lambda = (sigma^2 + sd^2) / (sigma sd)^2; the L2
regression mean((G - y)^2); LPIPS-VGG against the `lpips` package (when installed) and against its
formula on torchvision's VGG-16. Then the updates on a pairs folder, settings, and a short digits run.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from sidbench_baselines import dmd
from sidbench_baselines.karras import draw_index, grid_sigma, karras_grid

from sidbench.errors import AssetError, ConfigError
from sidbench.methods.base import Draws
from tests.methods._tiny import IMG, assert_grads_close, context, grads, lam, one_hot, tiny_net, zero_grads

B = 4


def _settings(**kw) -> dmd.Settings:
    return dmd.Settings(**{"regression_weight": 0.0, **kw})


# --- the grid ---------------------------------------------------------------------------------------

def test_karras_grid_is_the_closed_form_with_index_0_at_sigma_min():
    grid = karras_grid()
    i = torch.arange(1000, dtype=torch.float64)
    lo, hi = 0.002 ** (1 / 7), 80.0 ** (1 / 7)
    expected = (lo + i / 999 * (hi - lo)) ** 7  # increasing: index 0 = sigma_min, 999 = sigma_max
    assert grid.dtype == torch.float32 and grid.shape == (1000,)
    torch.testing.assert_close(grid.double(), expected, rtol=2e-6, atol=0)
    assert math.isclose(float(grid[0]), 0.002, rel_tol=1e-6)
    assert math.isclose(float(grid[-1]), 80.0, rel_tol=1e-6)


def test_index_draws_cover_both_ends_and_are_per_sample():
    gens = [torch.Generator().manual_seed(j) for j in range(4000)]
    idx = draw_index(Draws(gens), 20, 980)
    assert idx.shape == (4000, 1, 1, 1) and int(idx.min()) == 20 and int(idx.max()) == 980
    again = draw_index(Draws([torch.Generator().manual_seed(j) for j in (7, 8)]), 20, 980)
    assert torch.equal(again.flatten(), idx.flatten()[7:9])  # row j depends on sample j alone
    assert torch.equal(grid_sigma(torch.tensor([0, 999]), karras_grid()), karras_grid()[[0, 999]])
    s = dmd.GridSettings()
    assert (s.min_step, s.max_step) == (20, 980)  # int(0.02 * 1000), int(0.98 * 1000), both included


# --- the distribution-matching loss -------------------------------------------------------------------

def _inputs(label_dim=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(1000, (B, 1, 1, 1), generator=g)
    labels = one_hot(B, label_dim, seed) if label_dim else None
    return karras_grid()[idx], torch.randn(B, *IMG, generator=g), labels


@pytest.mark.parametrize("label_dim", [0, 10])
def test_distribution_matching_loss_value_and_generator_gradient_are_the_formula(label_dim):
    teacher, fake, gen = (tiny_net(i, label_dim) for i in (0, 1, 2))
    teacher.requires_grad_(False)
    fake.requires_grad_(False)
    sigma, noise, labels = _inputs(label_dim)
    z = torch.randn(B, *IMG, generator=torch.Generator().manual_seed(9))

    x_g = dmd.generate_images(gen, z, labels, 80.0)
    loss = dmd.generator_loss(teacher, fake, x_g, sigma, noise, labels)
    loss.backward()
    ours = grads(gen)
    zero_grads(gen)

    x = gen(80.0 * z, torch.full((B,), 80.0), labels)  # G(z) = D(80 z, 80)
    with torch.no_grad():
        y_r, y_f = teacher(x + sigma * noise, sigma, labels), fake(x + sigma * noise, sigma, labels)
        grad = (y_f - y_r) / (x - y_r).abs().mean(dim=(1, 2, 3), keepdim=True)
    n = x.numel()
    torch.testing.assert_close(loss, 0.5 * (grad**2).sum() / n, rtol=1e-5, atol=0)
    ((x * grad).sum() / n).backward()
    assert float(grad.abs().max()) > 0
    assert_grads_close(ours, grads(gen))


def test_per_sample_values_sum_to_the_global_mean_times_b():
    teacher, fake = tiny_net(0), tiny_net(1)
    x_g = torch.randn(B, *IMG)
    sigma, noise, _ = _inputs()
    per = dmd.generator_loss(teacher, fake, x_g, sigma, noise, reduction="none")
    assert per.shape == (B,)
    torch.testing.assert_close(per.sum() / B, dmd.generator_loss(teacher, fake, x_g, sigma, noise))
    with pytest.raises(ValueError, match="reduction"):
        dmd.generator_loss(teacher, fake, x_g, sigma, noise, reduction="sum")


class _Same(torch.nn.Module):
    """A denoiser that returns the clean image of x_t = x + sigma n exactly: |x - f_phi| = 0."""

    def __init__(self, x, sigma, noise):
        super().__init__()
        self.x, self.sigma, self.noise = x, sigma, noise

    def forward(self, x_t, sigma, labels=None):
        return self.x.detach().clone()


def test_nan_from_a_zero_normaliser_becomes_zero_gradient():
    x_g = torch.randn(B, *IMG, requires_grad=True)
    sigma, noise, _ = _inputs()
    same = _Same(x_g, sigma, noise)
    loss = dmd.generator_loss(same, same, x_g, sigma, noise)  # (0 - 0) / 0 = NaN -> 0
    loss.backward()
    assert float(loss.detach()) == 0 and torch.count_nonzero(x_g.grad) == 0


# --- the fake-net loss ------------------------------------------------------------------------------

def test_fake_loss_value_and_gradient_are_the_formula_and_no_gradient_reaches_x_g():
    fake = tiny_net(1)
    sigma, noise, _ = _inputs(seed=3)
    x_g = torch.randn(B, *IMG, requires_grad=True)
    loss = dmd.fake_score_loss(fake, x_g, sigma, noise)
    loss.backward()
    assert x_g.grad is None
    ours = grads(fake)
    zero_grads(fake)
    x = x_g.detach()
    expected = (lam(sigma) * (fake(x + sigma * noise, sigma) - x) ** 2).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=0)
    expected.backward()
    assert_grads_close(ours, grads(fake))


# --- the regression loss ------------------------------------------------------------------------------

def test_l2_regression_is_the_pixel_mean_and_the_target_gets_no_gradient():
    a, b = torch.randn(B, *IMG, requires_grad=True), torch.randn(B, *IMG, requires_grad=True)
    per = dmd.regression_loss(a, b, "l2", reduction="none")
    torch.testing.assert_close(per, ((a - b) ** 2).mean(dim=(1, 2, 3)))
    per.sum().backward()
    assert b.grad is None and a.grad is not None
    with pytest.raises(ConfigError, match="needs the LPIPS network"):
        dmd.regression_loss(a, b, "lpips")


def _random_lpips_state(seed=0):
    """A torchvision VGG-16 state dict (random weights) and LPIPS linear layers, named as their files."""
    import torchvision

    torch.manual_seed(seed)
    vgg = torchvision.models.vgg16(weights=None).state_dict()
    g = torch.Generator().manual_seed(seed)
    lins = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
            for k, c in enumerate((64, 128, 256, 512, 512))}
    return vgg, lins


def _lpips_formula(vgg_state, lins, x, y, size=64):
    """LPIPS v0.1 written out on torchvision's VGG-16 features."""
    import torchvision

    net = torchvision.models.vgg16(weights=None)
    net.load_state_dict(vgg_state)
    feats = net.features.eval()
    shift = torch.tensor([-0.030, -0.088, -0.188]).reshape(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).reshape(1, 3, 1, 1)

    def taps(img):
        img = torch.nn.functional.interpolate(img.expand(-1, 3, -1, -1), size=(size, size), mode="bilinear",
                                              align_corners=False)
        h, out = (img - shift) / scale, []
        for i, layer in enumerate(feats):
            h = layer(h.clone())
            if i in (3, 8, 15, 22, 29):
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    total = 0
    for k, (a, b) in enumerate(zip(taps(x), taps(y), strict=True)):
        w = lins[f"lin{k}.model.1.weight"].flatten()
        total = total + ((a - b) ** 2 * w[None, :, None, None]).sum(1).mean(dim=(1, 2))
    return total


def test_lpips_vgg_is_its_formula_on_torchvision_vgg16(tmp_path):
    from safetensors.torch import save_file
    from sidbench_baselines.lpips_vgg import load_lpips_vgg

    vgg, lins = _random_lpips_state()
    torch.save(vgg, tmp_path / "vgg16.pth")
    save_file(lins, str(tmp_path / "lin.safetensors"))
    net = load_lpips_vgg(tmp_path / "lin.safetensors", tmp_path / "vgg16.pth", resolution=64)
    x, y = torch.rand(3, 1, 16, 16) * 2 - 1, torch.rand(3, 1, 16, 16) * 2 - 1
    got = net(x, y)
    assert got.shape == (3,) and not any(p.requires_grad for p in net.parameters())
    torch.testing.assert_close(got, _lpips_formula(vgg, lins, x, y), rtol=1e-4, atol=1e-6)
    assert float(net(x, x).abs().max()) == 0
    assert set(net.weights_sha256) == {"lpips", "vgg16"}


@pytest.mark.filterwarnings("ignore::UserWarning")  # torchvision on lpips's `pretrained=`
def test_lpips_vgg_equals_the_lpips_package():
    lpips = pytest.importorskip("lpips")
    from sidbench_baselines.lpips_vgg import LPIPSVGG

    theirs = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()  # no download
    ours = LPIPSVGG(resolution=None).eval()
    state = {("features." + k.split(".", 2)[2] if k.startswith("net.slice") else k): v
             for k, v in theirs.state_dict().items() if not k.startswith(("scaling_layer", "lins."))}
    ours.load_state_dict(state, strict=True)
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(ours(x, y), theirs(x, y).flatten(), rtol=1e-5, atol=1e-6)


def test_missing_lpips_weights_are_one_clear_error(monkeypatch):
    from sidbench_baselines import lpips_vgg

    monkeypatch.setattr(lpips_vgg, "package_lin_weights", lambda: None)
    with pytest.raises(AssetError, match="needs LPIPS-VGG weights") as err:
        lpips_vgg.load_lpips_vgg()
    assert "regression_distance: l2" in str(err.value) and "\n" not in str(err.value)


# --- settings -----------------------------------------------------------------------------------------

def test_settings_name_the_missing_pairs_and_bad_values():
    from sidbench.registry import METHODS

    method = METHODS.get("dmd")
    with pytest.raises(ConfigError, match="sidbench pairs"):
        method.make_settings({})
    with pytest.raises(ConfigError, match="regression_distance"):
        method.make_settings({"pairs": "p", "regression_distance": "lpip"})
    with pytest.raises(ConfigError, match="max_step_percent"):
        method.make_settings({"pairs": "p", "max_step_percent": 0.01})
    s = method.make_settings({"regression_weight": 0.0})
    assert (s.sigma_init, s.regression_distance, s.lpips_resolution) == (80.0, "lpips", 224)


# --- the updates on a pairs folder -------------------------------------------------------------------

@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    from sidbench.generation.pairs import make_pairs

    out = tmp_path_factory.mktemp("pairs") / "p"
    make_pairs(tiny_net(0, label_dim=10).requires_grad_(False), out, "0-5", num_steps=2, progress=False)
    return out


def _nets(label_dim=10):
    teacher = tiny_net(0, label_dim).requires_grad_(False)
    return {"teacher": teacher, "fake_score": tiny_net(1, label_dim).requires_grad_(False),
            "generator": tiny_net(2, label_dim)}


def test_generator_update_is_dm_plus_weighted_regression_on_the_drawn_pairs(pairs_dir):
    from sidbench.generation.pairs import read_pairs

    nets = _nets()
    s = _settings(pairs=str(pairs_dir), regression_weight=0.25, regression_distance="l2")
    out = dmd.generator_update(context(nets, s, b=B, label_dim=10))
    # the oracle replays the update's draws: z, label, index, noise, pair index
    d = context(nets, s, b=B, label_dim=10).draws
    z, label = d.randn(*IMG), d.randint(10)
    idx, noise, j = d.randint(961, 1, 1, 1) + 20, d.randn(*IMG), d.randint(6)
    labels = torch.nn.functional.one_hot(label, 10).float()
    x_g = dmd.generate_images(nets["generator"], z, labels, 80.0)
    dm = dmd.generator_loss(nets["teacher"], nets["fake_score"], x_g, karras_grid()[idx], noise, labels,
                            reduction="none")
    p = read_pairs(pairs_dir)
    g = nets["generator"](p.noise[j], torch.full((B,), 80.0), p.labels[j])
    reg = ((g - p.image[j]) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(out.terms["dm"], dm)
    torch.testing.assert_close(out.terms["regression"], reg)
    torch.testing.assert_close(out.per_sample, dm + 0.25 * reg)
    assert float(reg.detach().min()) > 0


def test_pairs_of_another_noise_scale_or_shape_are_refused(pairs_dir):
    nets = _nets()
    s = _settings(pairs=str(pairs_dir), regression_weight=0.25, regression_distance="l2", sigma_init=2.5)
    with pytest.raises(AssetError, match="sigma_max 80"):
        dmd.generator_update(context(nets, s, b=B, label_dim=10))
    with pytest.raises(AssetError, match="10 classes, the networks 0"):
        dmd.generator_update(context(_nets(0), dataclasses.replace(s, sigma_init=80.0), b=B))


def test_fake_update_draws_z_label_index_noise_and_never_reaches_the_generator():
    nets = _nets()
    nets["fake_score"].requires_grad_(True)
    s = _settings()
    out = dmd.fake_score_update(context(nets, s, b=B, label_dim=10))
    d = context(nets, s, b=B, label_dim=10).draws
    z, label = d.randn(*IMG), torch.nn.functional.one_hot(d.randint(10), 10).float()
    idx, noise = d.randint(1000, 1, 1, 1), d.randn(*IMG)
    with torch.no_grad():
        x_g = dmd.generate_images(nets["generator"], z, label, 80.0)
    expected = dmd.fake_score_loss(nets["fake_score"], x_g, karras_grid()[idx], noise, label,
                                   reduction="none")
    torch.testing.assert_close(out.per_sample, expected)
    out.per_sample.sum().backward()
    assert all(p.grad is None for p in nets["generator"].parameters())


def test_the_method_declares_generator_first_and_the_fake_copy():
    from sidbench.registry import METHODS

    method = METHODS.get("dmd")
    assert method.phases(_settings())[0].updates == ("generator", "fake_score")
    assert [(n.name, n.init, n.ema) for n in method.networks] == [("fake_score", "teacher", False),
                                                                   ("generator", "fake_score", False)]
    assert not method.needs_real_data and method.product == "generator"


# --- a short run of the shipped recipes --------------------------------------------------------------

def test_dmd_digits_recipe_trains_with_finite_losses(tmp_path):
    from sidbench.api import pairs
    from sidbench.train import load_recipe, train
    from sidbench.train.monitor import read_jsonl
    from tests.test_recipes import RECIPES

    pairs(suite="digits", num_pairs=8, num_steps=2, out=tmp_path / "pairs", progress=False)
    config = load_recipe(RECIPES / "dmd-digits.yaml", [f"method_settings.pairs={tmp_path / 'pairs'}",
                                                       "training.batch=8", "training.batch_per_gpu=8"])
    result = train(config, tmp_path / "run", progress=False, max_steps=3)
    rows = read_jsonl(tmp_path / "run" / "log.jsonl")
    assert result.steps == 3 and rows and result.skipped_updates == 0
    assert all(math.isfinite(v) for row in rows for v in row["terms"].values())
    assert {"generator/dm", "generator/regression", "fake_score/fake_score"} <= set(rows[-1]["terms"])
    assert config.resolved()["method_settings"]["regression_distance"] == "l2"  # recorded, so in every record


def test_dmd_toy2d_recipe_trains_with_finite_losses(tmp_path):
    from sidbench.api import pairs
    from sidbench.train import load_recipe, train
    from sidbench.train.monitor import read_jsonl
    from tests.test_recipes import RECIPES
    from tests.train._methods import save_teacher

    teacher = save_teacher(tmp_path / "teacher")
    pairs(suite="toy2d", network=teacher, num_pairs=16, num_steps=4, out=tmp_path / "pairs", progress=False)
    config = load_recipe(RECIPES / "dmd-toy2d.yaml", [f"training.teacher={teacher}",
                                                      f"method_settings.pairs={tmp_path / 'pairs'}"])
    result = train(config, tmp_path / "run", progress=False, max_steps=20)
    rows = read_jsonl(tmp_path / "run" / "log.jsonl")
    assert result.steps == 20 and result.skipped_updates == 0
    assert all(math.isfinite(v) for row in rows for v in row["terms"].values())


def test_the_imagenet_recipe_is_methods_md():
    """methods.md, DMD v1: LPIPS-VGG at 224x224, weight 0.25 [secondary]; 25k pairs from Heun 256 steps;
    Karras grid with generator index U{20..980}; published ImageNet64 FID 2.62."""
    from sidbench.train import load_recipe
    from tests.test_recipes import RECIPES

    path = RECIPES / "dmd-imagenet64-cond.yaml"
    config = load_recipe(path)
    s = config.method_settings
    assert (config.suite, config.method) == ("imagenet64-cond", "dmd")
    assert (s.regression_weight, s.regression_distance, s.lpips_resolution) == (0.25, "lpips", 224)
    assert s.sigma_init == 80.0
    assert (s.min_step, s.max_step, s.num_train_timesteps) == (20, 980, 1000)
    assert "--num-pairs 25000 --num-steps 256" in path.read_text() and s.pairs is not None
    (entry,) = config.expected
    assert (entry["value"], entry["arxiv"], entry["source"]) == (2.62, "2311.18828", "paper")
