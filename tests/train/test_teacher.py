"""The small teacher trainer: learning on toy2d (against the exact denoiser), determinism, outputs, errors."""

import json

import pytest
import torch

from sidbench.errors import ConfigError
from sidbench.nets.build import build_network
from sidbench.nets.native import load_network
from sidbench.suites.toy2d import TEACHER_NETWORK, make_mixture
from sidbench.train.teacher import train_teacher


@pytest.fixture(scope="module")
def toy_teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy-teacher")
    summary = train_teacher("toy2d", out, kimg=100, seed=0, progress=False)
    return summary, out


def test_toy2d_loss_decreases(toy_teacher):
    summary, _ = toy_teacher
    first, last = summary.loss_curve[0][1], summary.loss_curve[-1][1]
    assert summary.steps == 391  # ceil(100_000 / 256)
    assert summary.loss_last < 0.95 * summary.loss_first
    assert last < 0.95 * first


def _denoiser_error(net, mixture, sigma, n=2000):
    g = torch.Generator().manual_seed(123)
    x0 = mixture.sample(n, g)
    x = x0 + sigma * torch.randn(x0.shape, generator=g)
    with torch.no_grad():
        return float((net(x, torch.full([n], sigma)) - mixture.denoise(x, sigma)).square().mean().sqrt())


@pytest.mark.parametrize("sigma", [0.2, 0.3, 0.5])
def test_trained_toy2d_denoiser_approaches_the_exact_one(toy_teacher, sigma):
    """At the noise levels where the mixture's structure matters, training cuts the error at least in half."""
    _, out = toy_teacher
    mixture = make_mixture()
    trained = load_network(out)
    torch.manual_seed(0)
    untrained = build_network(TEACHER_NETWORK).eval()
    err_trained = _denoiser_error(trained, mixture, sigma)
    err_untrained = _denoiser_error(untrained, mixture, sigma)
    assert err_trained < 0.5 * err_untrained


def test_outputs_and_training_json(toy_teacher):
    summary, out = toy_teacher
    record = json.loads((out / "training.json").read_text())
    assert record["suite"] == "toy2d" and record["seed"] == 0 and record["steps"] == summary.steps
    assert record["config"]["training"]["batch_size"] == 256
    assert record["config"]["network"]["init_kwargs"]["model_type"] == "MLPDenoiser"
    assert len(record["loss_curve"]) == 20 and record["wall_time_s"] > 0
    net = load_network(out)
    assert net.img_channels == 2 and net.img_resolution == 1


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "network.safetensors"))


@pytest.mark.parametrize("suite,kimg", [("toy2d", 2), ("digits", 0.064), ("digits-t2i", 0.064)])
def test_same_seed_gives_identical_weights(tmp_path, suite, kimg):
    a, b, c = (tmp_path / n for n in "abc")
    train_teacher(suite, a, kimg=kimg, seed=5, progress=False)
    train_teacher(suite, b, kimg=kimg, seed=5, progress=False)
    train_teacher(suite, c, kimg=kimg, seed=6, progress=False)
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_cli_trains_and_reports(tmp_path, capsys):
    from sidbench.cli import main

    assert main(["train-teacher", "--suite", "toy2d", "--out", str(tmp_path), "--kimg", "1", "--batch", "64",
                 "--lr", "1e-3", "--seed", "3"]) == 0
    assert "trained toy2d teacher" in capsys.readouterr().out
    record = json.loads((tmp_path / "training.json").read_text())
    assert record["batch_size"] == 64 and record["steps"] == 16 and record["seed"] == 3


def test_suite_without_trainable_teacher_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no teacher that sidbench trains"):
        train_teacher("cifar10-uncond", tmp_path, kimg=1, progress=False)


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="kimg must be a finite number > 0"):
        train_teacher("toy2d", tmp_path, kimg=0, progress=False)
    with pytest.raises(ConfigError, match="ema_halflife_kimg"):
        train_teacher("toy2d", tmp_path, kimg=1, progress=False, overrides={"ema_halflife": 1})
    assert not (tmp_path / "network.json").exists()


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("kwargs,key", [
    *[({"kimg": v}, "kimg") for v in (0, -1, NAN, INF, -INF, "10")],
    *[({"lr": v}, "lr") for v in (0, -1e-3, NAN, INF)],
    *[({"batch_size": v}, "batch size") for v in (0, -3, 2.5, True)],
    *[({"overrides": {"ema_halflife_kimg": v}}, "ema_halflife_kimg") for v in (0, NAN, -1)],
    *[({"overrides": {"lr_rampup_kimg": v}}, "lr_rampup_kimg") for v in (-1, INF)],
    *[({"overrides": {"label_dropout": v}}, "label_dropout") for v in (-0.1, 1.0, NAN)],
    *[({"overrides": {"P_std": v}}, "P_std") for v in (0, NAN)],
    ({"overrides": {"P_mean": NAN}}, "P_mean"),
    ({"overrides": {"ema_rampup": -0.5}}, "ema_rampup"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
])
def test_non_finite_negative_or_non_integer_settings_are_refused_in_one_line(tmp_path, kwargs, key):
    with pytest.raises(ConfigError) as err:
        train_teacher("toy2d", tmp_path, progress=False, **kwargs)
    assert key in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "network.json").exists()


def test_batch_larger_than_the_dataset_is_refused(tmp_path):
    match = "batch 100,000 is larger than the digits dataset \\(1,797 images\\)"
    with pytest.raises(ConfigError, match=match):
        train_teacher("digits", tmp_path, batch_size=100_000, progress=False)
    assert not (tmp_path / "network.json").exists()


@pytest.mark.parametrize("suite,batch,free", [("toy2d", 50_000, 20e6), ("digits", 1_000, 200e6)])
def test_batch_that_cannot_fit_in_memory_is_refused_with_the_estimate(tmp_path, monkeypatch, suite, batch,
                                                                       free):
    import sidbench.train.memory as memory

    monkeypatch.setattr(memory, "available_memory", lambda device: int(free))
    with pytest.raises(ConfigError) as err:
        train_teacher(suite, tmp_path, batch_size=batch, kimg=1, progress=False)
    msg = str(err.value)
    assert f"batch {batch:,} needs at least" in msg and "of activations per image" in msg
    assert "available" in msg and "at most about" in msg
    assert not (tmp_path / "network.json").exists()


@pytest.mark.parametrize("suite,kimg", [("toy2d", 1), ("digits", 0.064)])
def test_memory_probe_leaves_training_bit_identical(tmp_path, monkeypatch, suite, kimg):
    """The probe runs the loss twice before training; every RNG it touches is restored."""
    import sidbench.train.memory as memory

    train_teacher(suite, tmp_path / "probed", kimg=kimg, seed=2, progress=False)
    monkeypatch.setattr(memory, "available_memory", lambda device: None)  # no probe
    train_teacher(suite, tmp_path / "plain", kimg=kimg, seed=2, progress=False)
    a, b = _weights(tmp_path / "probed"), _weights(tmp_path / "plain")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_memory_estimate_extrapolates_what_autograd_saves():
    from sidbench.methods.edm import denoising_loss
    from sidbench.train.memory import _saved_bytes, estimate_training_memory

    torch.manual_seed(0)
    net = build_network(TEACHER_NETWORK).train()
    mixture = make_mixture()

    def run(b):
        g = torch.Generator().manual_seed(0)
        x = mixture.sample(b, g).float().reshape(b, 2, 1, 1)
        sigma = torch.randn(b, 1, 1, 1, generator=g).mul(1.2).sub(1.2).exp()
        return denoising_loss(net, x, sigma, torch.randn(x.shape, generator=g))

    est = estimate_training_memory(net, run, torch.device("cpu"))
    params = sum(p.numel() * 4 for p in net.parameters())
    assert est.fixed_bytes == 5 * params and est.per_image_bytes > 0
    # linear in the batch: two tiny batches predict a large one
    small, large = _saved_bytes(run, 2), _saved_bytes(run, 512)
    assert abs(large - (small + 510 * est.per_image_bytes)) <= 0.01 * large
    assert est.max_batch(est.total(1000)) == 1000


@pytest.mark.parametrize("n,text", [(24_300_000_000, "24.3 GB"), (312_000_000, "312 MB"),
                                    (2_700_000, "2.7 MB"), (9_400, "9.4 kB")])
def test_byte_counts_read_well(n, text):
    from sidbench.train.memory import gigabytes

    assert gigabytes(n) == text
