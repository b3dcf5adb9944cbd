"""FID against closed forms and scipy's sqrtm (slow oracle, called without `disp`)."""

import numpy as np
import pytest
import scipy.linalg

from sidbench.errors import ConfigError
from sidbench.metrics import FeatureStats, fid_from_stats


def _spd(rng, d, extra=8):
    a = rng.standard_normal((d, d + extra)) / np.sqrt(d)
    return a @ a.T


def _scipy_fid(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def test_equal_covariances_give_mean_distance():
    rng = np.random.default_rng(0)
    s = _spd(rng, 32)
    mu1, mu2 = rng.standard_normal(32), rng.standard_normal(32)
    assert fid_from_stats(mu1, s, mu2, s) == pytest.approx(((mu1 - mu2) ** 2).sum(), rel=1e-10)


def test_commuting_diagonal_covariances():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.1, 4, 50), rng.uniform(0.1, 4, 50)
    mu = rng.standard_normal(50)
    expected = ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert fid_from_stats(mu, np.diag(a), mu, np.diag(b)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("d", [8, 128, 512])
def test_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    s1, s2 = _spd(rng, d), _spd(rng, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    assert fid_from_stats(mu1, s1, mu2, s2) == pytest.approx(_scipy_fid(mu1, s1, mu2, s2), rel=1e-9)


@pytest.mark.slow
def test_matches_scipy_sqrtm_2048():
    rng = np.random.default_rng(2048)
    s1, s2 = _spd(rng, 2048), _spd(rng, 2048)
    mu1, mu2 = rng.standard_normal(2048), rng.standard_normal(2048)
    assert fid_from_stats(mu1, s1, mu2, s2) == pytest.approx(_scipy_fid(mu1, s1, mu2, s2), rel=1e-9)


def test_rank_deficient_covariance_is_handled():
    # Fewer samples than dimensions (small-N suites): singular PSD; tiny negative eigenvalues clipped.
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((20, 64)), rng.standard_normal((20, 64))
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    value = fid_from_stats(x.mean(0), s1, y.mean(0), s2)
    assert np.isfinite(value) and value == pytest.approx(_scipy_fid(x.mean(0), s1, y.mean(0), s2), rel=1e-6)


def test_self_distance_is_zero_and_halves_are_close():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40_000, 16)) @ rng.standard_normal((16, 16)) + 3.0
    whole = FeatureStats()
    whole.update(x.astype(np.float32))
    mu, sigma = whole.mean(), whole.cov()
    assert abs(fid_from_stats(mu, sigma, mu, sigma)) < 1e-9
    a, b = FeatureStats(), FeatureStats()
    a.update(x[::2].astype(np.float32))
    b.update(x[1::2].astype(np.float32))
    halves = fid_from_stats(a.mean(), a.cov(), b.mean(), b.cov())
    shifted = fid_from_stats(a.mean(), a.cov(), b.mean() + 0.5, b.cov())
    # Finite-sample bias only: tiny next to the total variance, and far below a 0.5 shift per dim (+4.0).
    assert 0 <= halves < 1e-3 * np.trace(sigma)
    assert shifted == pytest.approx(halves + 16 * 0.25, rel=0.05)


def test_is_symmetric_in_its_arguments():
    rng = np.random.default_rng(5)
    s1, s2 = _spd(rng, 40), _spd(rng, 40)
    mu1, mu2 = rng.standard_normal(40), rng.standard_normal(40)
    assert fid_from_stats(mu1, s1, mu2, s2) == pytest.approx(fid_from_stats(mu2, s2, mu1, s1), rel=1e-10)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ConfigError, match="dimensions differ: 3 vs 4"):
        fid_from_stats(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ConfigError, match="sigma1 has shape"):
        fid_from_stats(np.zeros(3), np.eye(4), np.zeros(3), np.eye(3))
    with pytest.raises(ConfigError, match="NaN"):
        fid_from_stats(np.full(3, np.nan), np.eye(3), np.zeros(3), np.eye(3))
