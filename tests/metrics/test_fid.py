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


# -- inputs that would make the number meaningless are refused ----------------------------------------
def _good(d=4):
    rng = np.random.default_rng(7)
    return rng.standard_normal(d), _spd(rng, d)


def _non_symmetric(mu, s):
    s = s.copy()
    s[0, 1] += 0.5
    return mu, s


def _negative_eigenvalue(mu, s):
    w, v = np.linalg.eigh(s)
    w[0] = -0.05 * w[-1]  # far beyond rounding: a matrix that is no covariance
    return mu, (v * w) @ v.T


_BAD = {
    "non-symmetric": (_non_symmetric, "not symmetric"),
    "negative-eigenvalue": (_negative_eigenvalue, "not positive semi-definite"),
    "negative-diagonal": (lambda mu, s: (mu, -s), "not positive semi-definite"),
    "nan-mu": (lambda mu, s: (np.where(np.arange(len(mu)) == 1, np.nan, mu), s), "NaN or Inf"),
    "inf-sigma": (lambda mu, s: (mu, np.where(np.eye(len(mu)) > 0, np.inf, s)), "NaN or Inf"),
    "dims": (lambda mu, s: (mu, np.eye(len(mu) + 1)), "has shape"),
    "0-d-mu": (lambda mu, s: (np.float64(1.0), s), "non-empty vector"),
    "0-d-sigma": (lambda mu, s: (mu, np.float64(1.0)), "has shape"),
    "empty": (lambda mu, s: (np.zeros(0), np.zeros((0, 0))), "non-empty vector"),
    "string-mu": (lambda mu, s: (mu.astype(str), s), "array; expected real numbers"),
    "string-sigma": (lambda mu, s: (mu, np.full(s.shape, "x")), "array; expected real numbers"),
    "complex": (lambda mu, s: (mu, s.astype(complex)), "array; expected real numbers"),
    "object": (lambda mu, s: (mu, s.astype(object)), "array; expected real numbers"),
}


@pytest.mark.parametrize("which", [1, 2])
@pytest.mark.parametrize("case", list(_BAD))
def test_meaningless_statistics_are_refused_on_either_side(case, which):
    make, message = _BAD[case]
    good = _good()
    bad = make(*_good())
    args = (*bad, *good) if which == 1 else (*good, *bad)
    with pytest.raises(ConfigError, match=message):
        fid_from_stats(*args)


def test_rounding_sized_asymmetry_and_negative_eigenvalues_are_accepted():
    """float32-stored, rank-deficient covariances are covariances: refusing them would be wrong."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((30, 64))
    s = np.cov(x, rowvar=False).astype(np.float32).astype(np.float64)  # rank 29: zero eigenvalues, rounded
    assert np.linalg.eigvalsh(s).min() < 0  # the rounding this test is about
    s_asym = s.copy()
    s_asym[0, 1] *= 1 + 1e-9
    for sigma in (s, s_asym):
        assert np.isfinite(fid_from_stats(x.mean(0), sigma, x.mean(0) + 1, np.eye(64)))


def test_a_distance_is_never_negative_and_the_raw_value_is_kept():
    from sidbench.metrics.fid import frechet_distance

    for seed in range(3):  # identical, ill-conditioned statistics: the formula rounds below zero
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((100, 128)) * rng.uniform(0.01, 100, 128) + 50
        mu, s = x.mean(0), np.cov(x, rowvar=False)
        fd = frechet_distance(mu, s, mu, s)
        assert fd.raw < 0 and fd.value == 0.0 == fid_from_stats(mu, s, mu, s)
    rng = np.random.default_rng(9)
    s1, s2 = _spd(rng, 16), _spd(rng, 16)
    fd = frechet_distance(np.zeros(16), s1, np.ones(16), s2)
    assert fd.value == fd.raw > 0  # positive distances are untouched
