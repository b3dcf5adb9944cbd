"""Precision/recall: known answers on nested sets, argument order, and torch-fidelity 0.4.0 equality."""

import numpy as np
import pytest
import torch
from torch_fidelity.metric_prc import prc_features_to_metric

from sidbench.errors import ConfigError
from sidbench.metrics import precision_recall


def _real_and_tight_subset(seed=0):
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((2000, 16)).astype(np.float32)
    corner = real[(real[:, 0] > 0.8) & (real[:, 1] > 0.8)]  # one corner of the real set (~4%)
    fake = corner + 1e-3 * rng.standard_normal(corner.shape).astype(np.float32)
    return real, fake


def test_tight_subset_has_high_precision_and_low_recall():
    real, fake = _real_and_tight_subset()
    out = precision_recall(real, fake)
    assert out.precision > 0.98
    assert out.recall < 0.5


def test_swapped_arguments_swap_the_answer():
    real, fake = _real_and_tight_subset()
    a = precision_recall(real, fake)
    b = precision_recall(fake, real)
    assert b.precision == a.recall and b.recall == a.precision


def test_disjoint_sets_score_zero_and_identical_sets_one():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 8))
    far = precision_recall(x, x + 100.0)
    assert far.precision == 0.0 and far.recall == 0.0
    same = precision_recall(x, x.copy(), dtype="float64")
    assert same.precision == 1.0 and same.recall == 1.0


@pytest.mark.parametrize("save_cpu_ram", [False, True])
def test_equals_torch_fidelity(save_cpu_ram):
    g = torch.Generator().manual_seed(2)
    real = torch.randn(900, 32, generator=g)
    fake = 0.8 * torch.randn(700, 32, generator=g) + 0.3
    # torch-fidelity's convention: features_1 = generated, features_2 = real
    ref = prc_features_to_metric(fake, real, prc_neighborhood=3, prc_batch_size=10_000,
                                 save_cpu_ram=save_cpu_ram, verbose=False)
    out = precision_recall(real, fake, k=3, batch_size=10_000)
    # same counts (torch-fidelity averages in float32, hence 1e-6)
    assert round(out.precision * 700) == round(ref["precision"] * 700)
    assert round(out.recall * 900) == round(ref["recall"] * 900)
    assert out.precision == pytest.approx(ref["precision"], abs=1e-6)
    assert out.f_score == pytest.approx(ref["f_score"], rel=1e-6)
    assert 0.05 < out.precision < 0.99 and 0.05 < out.recall < 0.99  # a non-trivial case


def test_batch_size_does_not_change_the_answer():
    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(500, 24, generator=g, dtype=torch.float64), torch.randn(450, 24, generator=g,
                                                                                     dtype=torch.float64)
    outs = {bs: precision_recall(real, fake, batch_size=bs, dtype="float64") for bs in (7, 64, 10_000)}
    assert len({(o.precision, o.recall) for o in outs.values()}) == 1


def test_knn_radii_match_brute_force_for_any_block_size():
    from sidbench.metrics.precision_recall import knn_radii

    rng = np.random.default_rng(5)
    x = rng.standard_normal((203, 6))
    full = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    expected = np.sort(full, axis=1)[:, 3]  # 3rd neighbour; column 0 is the point itself
    for bs in (1, 50, 64, 1000):
        got = knn_radii(torch.from_numpy(x), 3, bs).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_errors():
    with pytest.raises(ConfigError, match="unsupported distance dtype"):
        precision_recall(np.zeros((10, 2)), np.zeros((10, 2)), dtype="float16")
    with pytest.raises(ConfigError, match="equal D"):
        precision_recall(np.zeros((10, 2)), np.zeros((10, 3)))
    with pytest.raises(ConfigError, match="needs more than 3 samples"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))
