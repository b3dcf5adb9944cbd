"""FeatureStats: exact sums -> bit-identical statistics for any batching, order, merge or process count."""

import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sidbench.errors import ConfigError
from sidbench.metrics import FeatureStats


def _features(n=1500, d=48, seed=0):
    rng = np.random.default_rng(seed)
    # Mixed magnitudes (1e-3 .. 1e2) and signs, plus ReLU-like exact zeros, as real features have.
    x = rng.standard_normal((n, d)) * np.logspace(-3, 2, d) + rng.uniform(-1, 5, d)
    x[rng.random((n, d)) < 0.1] = 0.0
    return x.astype(np.float32)


def _stats_in_batches(x, batch, order=None, keep=False):
    s = FeatureStats(keep_features=keep)
    starts = list(range(0, len(x), batch))
    for start in (starts if order is None else [starts[i] for i in order]):
        s.update(x[start:start + batch], indices=np.arange(start, min(start + batch, len(x))))
    return s


def test_bit_identical_for_batch_sizes_and_orders():
    x = _features()
    ref = _stats_in_batches(x, len(x))
    for batch in (1, 7, 64):
        s = _stats_in_batches(x, batch)
        assert np.array_equal(s.mean(), ref.mean()) and np.array_equal(s.cov(), ref.cov())
        assert np.array_equal(s.cov(unbiased=False), ref.cov(unbiased=False))
    rev = _stats_in_batches(x, 64, order=list(range((len(x) + 63) // 64))[::-1])
    assert np.array_equal(rev.mean(), ref.mean()) and np.array_equal(rev.cov(), ref.cov())


def test_bit_identical_when_some_batches_skip_zero_limbs():
    # Rows 0-99 are small and non-negative (top limb all zero), the rest are large: batching decides
    # which batches skip matmuls, and the bits must not care.
    rng = np.random.default_rng(9)
    x = np.concatenate([rng.uniform(0, 15, (100, 8)), rng.uniform(-500, 500, (60, 8))]).astype(np.float32)
    ref = _stats_in_batches(x, len(x))
    for batch in (1, 10, 64):
        s = _stats_in_batches(x, batch)
        assert np.array_equal(s.mean(), ref.mean()) and np.array_equal(s.cov(), ref.cov())
    np.testing.assert_allclose(ref.cov(), np.cov(x.astype(np.float64), rowvar=False), rtol=1e-12)


_PROP_X = _features(n=120, d=6, seed=11)
_PROP_REF = _stats_in_batches(_PROP_X, 120)


@settings(max_examples=25, deadline=None, database=None)  # writes no .hypothesis folder
@given(cuts=st.lists(st.integers(1, 119), max_size=12, unique=True), order_seed=st.integers(0, 2**31 - 1))
def test_any_partition_and_order_is_bit_identical(cuts, order_seed):
    bounds = [0, *sorted(cuts), 120]
    parts = [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    np.random.default_rng(order_seed).shuffle(parts)
    s = FeatureStats(keep_features=True)
    for a, b in parts:
        s.update(_PROP_X[a:b], indices=np.arange(a, b))
    assert np.array_equal(s.mean(), _PROP_REF.mean()) and np.array_equal(s.cov(), _PROP_REF.cov())
    assert np.array_equal(s.features(), _PROP_X)


def test_naive_float64_sums_are_not_bit_stable_but_ours_are():
    # Shows why the exact scheme exists: plain float64 accumulation changes with the batch size.
    x = _features().astype(np.float64)
    sums = []
    for batch in (1, 7, 64):
        acc = np.zeros((x.shape[1], x.shape[1]))
        for start in range(0, len(x), batch):
            acc += x[start:start + batch].T @ x[start:start + batch]
        sums.append(acc)
    assert not (np.array_equal(sums[0], sums[1]) and np.array_equal(sums[1], sums[2]))


def test_matches_float64_oracle():
    x = _features(seed=1)
    s = _stats_in_batches(x, 100)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(s.mean(), x64.mean(0), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(s.cov(), np.cov(x64, rowvar=False), rtol=1e-11, atol=1e-12)
    biased = np.cov(x64, rowvar=False, bias=True)
    np.testing.assert_allclose(s.cov(unbiased=False), biased, rtol=1e-11, atol=1e-12)
    assert s.num == len(x)


def test_merge_equals_single_pass_in_any_order():
    x = _features(seed=2)
    ref = _stats_in_batches(x, len(x))
    parts = [x[:300], x[300:301], x[301:1000], x[1000:]]
    a = FeatureStats()
    for p in parts:
        t = FeatureStats()
        t.update(p)
        a.merge(t)
    b = FeatureStats()
    for p in reversed(parts):
        t = FeatureStats()
        t.update(p)
        b.merge(t)
    for s in (a, b):
        assert np.array_equal(s.mean(), ref.mean()) and np.array_equal(s.cov(), ref.cov())


def test_kept_features_are_sorted_by_index():
    x = _features(n=200, seed=3)
    s = _stats_in_batches(x, 7, order=list(range(29))[::-1], keep=True)
    assert np.array_equal(s.features(), x)
    assert np.array_equal(s.indices(), np.arange(200))
    with pytest.raises(ConfigError, match="added twice"):
        s.update(x[:1], indices=[0])
        s.features()


@pytest.mark.parametrize("second", [[4], [9, 3], np.array([5], dtype=np.int32), torch.tensor([0])],
                         ids=["single", "among-new", "int32", "tensor"])
def test_an_index_added_again_raises_and_counts_nothing(second):
    s = FeatureStats()
    s.update(np.ones((6, 3), dtype=np.float32), indices=np.arange(6))
    mean = s.mean()
    with pytest.raises(ConfigError, match="added twice"):
        s.update(np.full((len(second), 3), 7.0, dtype=np.float32), indices=second)
    assert s.num == 6 and np.array_equal(s.mean(), mean)  # the refused batch left no trace


def test_repeated_index_inside_one_batch_and_after_implicit_indices_raise():
    s = FeatureStats()
    with pytest.raises(ConfigError, match="index 2 added twice"):
        s.update(np.ones((3, 2), dtype=np.float32), indices=[2, 5, 2])
    assert s.num == 0
    s.update(np.ones((3, 2), dtype=np.float32))  # implicit indices 0, 1, 2
    with pytest.raises(ConfigError, match="index 1 added twice"):
        s.update(np.ones((1, 2), dtype=np.float32), indices=[1])
    bad = np.ones((2, 2), dtype=np.float32)
    bad[1, 0] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        s.update(bad, indices=[3, 4])
    s.update(np.ones((1, 2), dtype=np.float32), indices=[3])  # the refused batch did not claim index 3
    assert s.num == 4


@pytest.mark.parametrize("bad", [[0.5], [1.0], ["a"]], ids=["fraction", "float", "string"])
def test_non_integer_indices_are_refused(bad):
    with pytest.raises(ConfigError, match="integers"):
        FeatureStats().update(np.ones((1, 2), dtype=np.float32), indices=np.asarray(bad))


def test_merging_overlapping_shards_raises():
    x = _features(n=20, d=3)
    a, b, c = FeatureStats(), FeatureStats(), FeatureStats()
    a.update(x[:10], indices=np.arange(10))
    b.update(x[8:], indices=np.arange(8, 20))
    c.update(x[10:], indices=np.arange(10, 20))
    with pytest.raises(ConfigError, match="index 8 is in both statistics merged"):
        a.merge(b)
    assert a.num == 10
    a.merge(c)
    assert a.num == 20 and np.array_equal(a.mean(), _stats_in_batches(x, 20).mean())


def test_npz_dict_is_edm_compatible():
    x = _features(n=100, d=5, seed=4)
    d = _stats_in_batches(x, 10).to_npz_dict(unbiased=False)
    assert set(d) >= {"mu", "sigma", "num_images"}
    assert d["sigma"].shape == (5, 5) and int(d["num_images"]) == 100
    np.testing.assert_allclose(d["sigma"], np.cov(x.astype(np.float64), rowvar=False, bias=True), rtol=1e-10)


def test_bad_input_is_refused():
    s = FeatureStats()
    with pytest.raises(ConfigError, match="NaN"):
        s.update(np.array([[np.nan, 1.0]], dtype=np.float32))
    s.update(np.ones((2, 2), dtype=np.float32))
    with pytest.raises(ConfigError, match="dimension changed"):
        s.update(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(ConfigError, match="beyond the exact-sum range"):
        s.update(np.full((1, 2), 2e7, dtype=np.float32))
    with pytest.raises(ConfigError, match="2-D"):
        s.update(np.ones(4, dtype=np.float32))
    with pytest.raises(ConfigError, match="at least 2"):
        t = FeatureStats()
        t.update(np.ones((1, 2), dtype=np.float32))
        t.cov()


def test_all_reduce_is_a_noop_without_process_group():
    x = _features(n=50, d=4)
    s = _stats_in_batches(x, 50)
    mean = s.mean()
    s.all_reduce()
    assert s.num == 50 and np.array_equal(s.mean(), mean)


# -- 1 vs 2 gloo processes -------------------------------------------------------------------------
def _worker(rank, world, init_file, out_dir, batch):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                         world_size=world)
    try:
        x = _features(seed=7)
        s = FeatureStats(keep_features=True)
        # EDM's sharding: batches dealt round-robin to the ranks.
        starts = list(range(0, len(x), batch))
        for start in starts[rank::world]:
            s.update(x[start:start + batch], indices=np.arange(start, min(start + batch, len(x))))
        s.all_reduce()
        np.savez(os.path.join(out_dir, f"rank{rank}.npz"), mu=s.mean(), sigma=s.cov(), feats=s.features(),
                 num=s.num)
    finally:
        torch.distributed.destroy_process_group()


def _overlap_worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                         world_size=world)
    try:
        s = FeatureStats()
        s.update(np.ones((3, 2), dtype=np.float32), indices=[0, 1, 2] if rank == 0 else [2, 3, 4])
        try:
            s.all_reduce()
            outcome = "reduced"
        except ConfigError as exc:
            outcome = str(exc)
        with open(os.path.join(out_dir, f"rank{rank}.txt"), "w") as f:
            f.write(outcome)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.distributed
def test_an_image_in_two_shards_raises_on_every_process(tmp_path):
    torch.multiprocessing.spawn(_overlap_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2,
                                join=True)
    for rank in (0, 1):
        assert "index 2 was added by more than one process" in (tmp_path / f"rank{rank}.txt").read_text()


@pytest.mark.distributed
def test_bit_identical_for_one_and_two_gloo_processes(tmp_path):
    x = _features(seed=7)
    ref = _stats_in_batches(x, len(x))
    args = (2, str(tmp_path / "init"), str(tmp_path), 64)
    torch.multiprocessing.spawn(_worker, args=args, nprocs=2, join=True)
    for rank in (0, 1):
        out = np.load(tmp_path / f"rank{rank}.npz")
        assert int(out["num"]) == len(x)
        assert np.array_equal(out["mu"], ref.mean()) and np.array_equal(out["sigma"], ref.cov())
        assert np.array_equal(out["feats"], x)


def test_buffered_rows_never_alias_the_callers_array():
    x = _features(n=10, d=3).astype(np.float64)
    s = FeatureStats()
    s.update(x)  # fewer rows than a chunk: buffered, not yet summed
    expected = x.mean(0)
    x[:] = 1e6  # the caller reuses its array
    np.testing.assert_allclose(s.mean(), expected, rtol=1e-12)


def test_chunked_accumulation_equals_one_pass_across_chunk_boundaries():
    from sidbench.metrics.stats import CHUNK_ROWS

    x = _features(n=CHUNK_ROWS + 300, d=5, seed=12)
    one = _stats_in_batches(x, len(x))
    for batch in (64, CHUNK_ROWS - 1, CHUNK_ROWS + 1):
        s = _stats_in_batches(x, batch)
        assert np.array_equal(s.cov(), one.cov()) and np.array_equal(s.mean(), one.mean())
    half, rest = FeatureStats(), FeatureStats()
    half.update(x[:100], indices=np.arange(100))
    rest.update(x[100:], indices=np.arange(100, len(x)))
    assert np.array_equal(half.merge(rest).cov(), one.cov())  # merge flushes both buffers
