"""FID on 2048-d statistics: our eigh route vs scipy.linalg.sqrtm (the route EDM/ADM/clean-fid take).

Run: pytest benchmarks/test_bench_fid.py --benchmark-only -p no:cacheprovider
The speed ratio goes into `benchmark.extra_info` (no timing assertions); equality to 1e-9 is asserted.
"""

import time

import numpy as np
import pytest
import scipy.linalg

from sidbench.metrics import fid_from_stats

D = 2048


def _scipy_fid(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)  # no `disp`: deprecated in scipy 1.16
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


@pytest.fixture(scope="module")
def stats():
    rng = np.random.default_rng(0)
    out = []
    for shift in (0.0, 0.1):
        a = rng.standard_normal((D, D + 64)) / np.sqrt(D)
        out += [rng.standard_normal(D) + shift, a @ a.T]
    return out


def test_fid_2048_vs_scipy_sqrtm(benchmark, stats):
    t0 = time.perf_counter()
    expected = _scipy_fid(*stats)
    scipy_s = time.perf_counter() - t0
    value = benchmark.pedantic(fid_from_stats, args=tuple(stats), rounds=3, iterations=1)
    assert value == pytest.approx(expected, rel=1e-9)
    ours_s = benchmark.stats.stats.mean
    benchmark.extra_info.update({"scipy_sqrtm_s": scipy_s, "ours_mean_s": ours_s,
                                 "speedup_vs_scipy": scipy_s / ours_s,
                                 "rel_diff": abs(value - expected) / expected})


def test_feature_stats_update_vs_naive_float64(benchmark):
    """Cost of exact (bit-stable) accumulation vs EDM-style float64 sums, 4096 x 2048 pool-like features."""
    import torch

    from sidbench.metrics import FeatureStats

    rng = np.random.default_rng(1)
    x = np.maximum(rng.standard_normal((4096, D)) * 2, 0).astype(np.float32)  # ReLU-like, 0..~10

    def naive():
        t = torch.from_numpy(x).double()
        return t.sum(0), t.T @ t

    t0 = time.perf_counter()
    _, naive_sum2 = naive()
    naive_s = time.perf_counter() - t0

    def exact():
        s = FeatureStats()
        s.update(x)
        return s

    s = benchmark.pedantic(exact, rounds=1, iterations=1)
    np.testing.assert_allclose(s.sum_outer(), naive_sum2.numpy(), rtol=1e-12)
    ours_s = benchmark.stats.stats.mean
    benchmark.extra_info.update({"naive_float64_s": naive_s, "exact_s": ours_s,
                                 "slowdown_vs_naive": ours_s / naive_s,
                                 "exact_images_per_s": len(x) / ours_s})
