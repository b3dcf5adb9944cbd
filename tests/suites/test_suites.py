"""Suites are registered through entry points and carry the facts that make runs comparable."""

import pytest

from sidbench.assets import ASSETS
from sidbench.registry import SUITES
from sidbench.suites.base import Suite, get_suite

ALL = ["digits", "toy2d", "cifar10-uncond", "cifar10-cond", "imagenet64-cond", "ffhq64", "afhqv2-64",
       "coco2014-sd15"]


def test_every_suite_is_registered_with_a_version():
    names = SUITES.names()
    assert not SUITES.broken, SUITES.broken
    for name in ALL:
        assert name in names
        suite = get_suite(name)
        assert isinstance(suite, Suite) and suite.name == name and suite.version == "1.0.0"


# name: (filename, images, resolution, channels, label_dim, heun_steps, teacher asset, ref stats asset)
FACTS = {
    "cifar10-uncond": ("cifar10-32x32.zip", 50_000, 32, 3, 0, 18, "edm-cifar10-uncond", "ref-cifar10"),
    "cifar10-cond": ("cifar10-32x32.zip", 50_000, 32, 3, 10, 18, "edm-cifar10-cond", "ref-cifar10"),
    "imagenet64-cond": ("imagenet-64x64.zip", 1_281_167, 64, 3, 1000, 40, "edm-imagenet64", "ref-imagenet64"),
    "ffhq64": ("ffhq-64x64.zip", 70_000, 64, 3, 0, 40, "edm-ffhq64", "ref-ffhq64"),
    "afhqv2-64": ("afhqv2-64x64.zip", 15_803, 64, 3, 0, 40, "edm-afhqv2-64", "ref-afhqv2-64"),
}


@pytest.mark.parametrize("name", sorted(FACTS))
def test_edm_suite_facts(name):
    filename, count, res, ch, labels, steps, teacher, ref = FACTS[name]
    s = get_suite(name)
    assert (s.dataset.filename, s.dataset.num_images, s.resolution, s.channels, s.label_dim) == \
        (filename, count, res, ch, labels)
    assert s.dataset.sha256 is None  # never guessed
    assert (s.teacher.asset, s.teacher.heun_steps, s.ref_stats) == (teacher, steps, ref)
    assert s.teacher.asset in ASSETS and s.ref_stats in ASSETS
    assert (s.teacher.sigma_min, s.teacher.sigma_max, s.teacher.rho) == (0.002, 80.0, 7.0)
    assert "edm-fid50k" in s.protocols


@pytest.mark.parametrize("name,teacher_dropout,augment_dim", [
    ("cifar10-uncond", 0.13, 9), ("cifar10-cond", 0.13, 9), ("imagenet64-cond", 0.10, 0),
    ("ffhq64", 0.05, 9), ("afhqv2-64", 0.25, 9), ("digits", 0.1, 0), ("toy2d", 0.0, 0)])
def test_per_suite_teacher_facts(name, teacher_dropout, augment_dim):
    s = get_suite(name).settings
    assert (s["teacher_dropout"], s["augment_dim"]) == (teacher_dropout, augment_dim)


# Keys a method reads from its recipe (SiD, SiDA, SiD-LSG); a suite holding one would be a second
# source of truth for the same number.
METHOD_KEYS = {"sid", "sida", "lr", "glr", "batch", "batch_gpu", "alpha", "ema", "ema_mimg", "ema_rampup",
               "fp16", "dropout", "augment_p", "sigma_init", "init_sigma", "tmax", "tmin", "t_init", "lsg",
               "lsg_gan", "cfg_kappa", "empty_prompt_dropout", "g_beta1", "published"}


@pytest.mark.parametrize("name", ALL)
def test_suites_hold_no_method_hyperparameters(name):
    assert not METHOD_KEYS & set(get_suite(name).settings), name


def test_ffhq_and_afhq_are_told_apart_by_identity():
    # the public SiDA AFHQv2 scripts feed ffhq-64x64.zip: same resolution, different identity
    f, a = get_suite("ffhq64").dataset, get_suite("afhqv2-64").dataset
    assert f.resolution == a.resolution
    assert (f.filename, f.num_images) != (a.filename, a.num_images)


def test_imagenet_long_samplers_and_adm_reference():
    s = get_suite("imagenet64-cond").settings
    assert s["teacher_samplers"]["heun-256"]["num_steps"] == 256
    assert s["teacher_samplers"]["stochastic-256"]["S_churn"] == 40
    assert s["pr_ref_stats"] in ASSETS
    assert "pr-inception-adm" in get_suite("imagenet64-cond").protocols


def test_coco_suite():
    s = get_suite("coco2014-sd15")
    assert s.dataset.num_images == 40_504
    assert s.protocols == ("coco2014-fid30k-clean", "clip-score-vitg14")
    assert s.settings["captions_asset"] in ASSETS and s.settings["num_captions"] == 30_000


def test_embedded_suites():
    d = get_suite("digits")
    assert (d.dataset.num_images, d.resolution, d.channels, d.label_dim) == (1797, 16, 1, 10)
    assert d.teacher.asset is None and d.teacher.packaged == "digits/teacher" and d.teacher.heun_steps == 18
    assert d.settings["teacher_network"]["init_kwargs"]["label_dim"] == 10
    t = get_suite("toy2d")
    assert (t.resolution, t.channels) == (1, 2)
    assert t.settings["teacher_network"]["init_kwargs"]["model_type"] == "MLPDenoiser"


def test_protocol_names_are_known_to_the_metrics_package():
    protocols = pytest.importorskip("sidbench.metrics.protocols")
    for name in ALL:
        for p in get_suite(name).protocols:
            assert p in protocols.PROTOCOLS, f"{name}: unknown protocol {p}"


def test_digits_identity_matches_the_dataset():
    from sidbench.data.digits import DigitsDataset
    from sidbench.suites.dataset_check import check_dataset

    check_dataset(DigitsDataset(resolution=16), get_suite("digits").dataset)


def test_unknown_suite_suggests_the_closest():
    from sidbench.errors import ConfigError

    with pytest.raises(ConfigError, match="cifar10-cond"):
        get_suite("cifar10-cnd")
