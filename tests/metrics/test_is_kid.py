"""Inception Score and KID against closed forms and torch-fidelity 0.4.0's own functions."""

import numpy as np
import pytest
import torch
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from sidbench.errors import ConfigError
from sidbench.metrics import inception_score, kid


def test_uniform_predictor_scores_one():
    out = inception_score(np.zeros((1000, 1008)))
    assert out.mean == pytest.approx(1.0, abs=1e-12) and out.std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("mode", "splits"), [("sid", 10), ("adm", 10), ("fidelity", 1)])
def test_balanced_one_hot_predictor_scores_number_of_classes(mode, splits):
    classes = 10
    logits = np.full((10_000, classes), -1e3)
    logits[np.arange(10_000), np.arange(10_000) % classes] = 0.0  # every split holds each class equally
    # (torch-fidelity's shuffle unbalances its 10 splits, so that mode is checked on one split)
    out = inception_score(logits, mode=mode, splits=splits)
    assert out.mean == pytest.approx(classes, rel=1e-9)


def test_sid_mode_equals_torch_fidelity_without_shuffle():
    logits = torch.randn(2003, 1008, generator=torch.Generator().manual_seed(0)) * 3
    ref = isc_features_to_metric(logits, splits=10, shuffle=False)
    out = inception_score(logits, splits=10, mode="sid")
    assert out.mean == pytest.approx(ref["inception_score_mean"], rel=1e-12)
    assert out.std == pytest.approx(ref["inception_score_std"], rel=1e-9)


def test_fidelity_mode_equals_torch_fidelity_with_its_shuffle():
    logits = torch.randn(2003, 1008, generator=torch.Generator().manual_seed(1)) * 3
    ref = isc_features_to_metric(logits, splits=10, shuffle=True, rng_seed=2020)
    out = inception_score(logits, mode="fidelity")
    assert out.mean == pytest.approx(ref["inception_score_mean"], rel=1e-12)
    assert out.std == pytest.approx(ref["inception_score_std"], rel=1e-9)
    # the shuffle matters: index order gives a different number on the same logits
    assert inception_score(logits, mode="sid").mean != pytest.approx(out.mean, rel=1e-9)


def test_adm_mode_uses_fixed_splits_of_5000_in_index_order():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((12_000, 20)) * 2
    out = inception_score(logits, mode="adm")

    def hand(part):  # direct formula, float64
        p = np.exp(part) / np.exp(part).sum(1, keepdims=True)
        q = p.mean(0)
        return np.exp(np.mean(np.sum(p * (np.log(p) - np.log(q)), 1)))

    expected = [hand(logits[:5000]), hand(logits[5000:10_000]), hand(logits[10_000:])]
    assert out.std is None and len(out.scores) == 3
    assert out.mean == pytest.approx(np.mean(expected), rel=1e-12)


def test_inception_score_bad_input():
    with pytest.raises(ConfigError, match="unknown Inception Score mode"):
        inception_score(np.zeros((4, 3)), mode="tf")
    with pytest.raises(ConfigError, match="cannot make 10 splits of 4"):
        inception_score(np.zeros((4, 3)))


def _feature_pair(seed=0, n1=1300, n2=1200, d=64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n1, d, generator=g, dtype=torch.float64), 0.3 + torch.randn(n2, d, generator=g,
                                                                                    dtype=torch.float64)


def test_kid_equals_torch_fidelity():
    f1, f2 = _feature_pair()
    ref = kid_features_to_metric(f1, f2, kid_subsets=20, kid_subset_size=500, verbose=False)
    out = kid(f1, f2, num_subsets=20, subset_size=500)
    assert out.mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-9)
    assert out.std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-8)


def test_kid_float32_arithmetic_matches_torch_fidelity_on_float32_features():
    f1, f2 = (f.float() for f in _feature_pair(seed=1))
    ref = kid_features_to_metric(f1, f2, kid_subsets=5, kid_subset_size=400, verbose=False)
    out = kid(f1, f2, num_subsets=5, subset_size=400, dtype=np.float32)
    assert out.mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-6)


def test_kid_hand_computed_unbiased_mmd():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 3)) + 1
    out = kid(x, y, num_subsets=1, subset_size=6)

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    m = 6
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    assert out.mean == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_same_distribution_near_zero_and_errors():
    rng = np.random.default_rng(4)
    same = kid(rng.standard_normal((3000, 16)), rng.standard_normal((3000, 16)), num_subsets=10)
    diff = kid(rng.standard_normal((3000, 16)), rng.standard_normal((3000, 16)) + 0.5, num_subsets=10)
    assert abs(same.mean) < 0.01 < diff.mean
    with pytest.raises(ConfigError, match="subset size 1000 exceeds"):
        kid(np.zeros((10, 4)), np.zeros((2000, 4)))
    with pytest.raises(ConfigError, match="equal D"):
        kid(np.zeros((10, 4)), np.zeros((10, 5)), subset_size=5)
