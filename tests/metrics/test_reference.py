"""Reference statistics: EDM/ADM npz reading without pickle, our format's round-trip, clear errors."""

import json

import numpy as np
import pytest

from sidbench.errors import AssetError
from sidbench.metrics import FeatureStats, fid_from_stats, load_reference, save_reference
from sidbench.metrics.reference import reference_images


def _edm_npz(path, d=6, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, d))
    mu, sigma = rng.standard_normal(d), a @ a.T
    np.savez(path, mu=mu, sigma=sigma)  # exactly the two keys EDM's fid.py writes
    return mu, sigma


def test_edm_npz_round_trip(tmp_path):
    mu, sigma = _edm_npz(tmp_path / "cifar10-32x32.npz")
    ref = load_reference(tmp_path / "cifar10-32x32.npz", expected_dim=6)
    assert np.array_equal(ref.mu, mu) and np.array_equal(ref.sigma, sigma)
    assert ref.num_images is None and ref.meta == {} and ref.dim == 6 and not ref.has_images
    save_reference(tmp_path / "copy.npz", ref, meta={"source": "edm"})
    again = load_reference(tmp_path / "copy.npz")
    assert np.array_equal(again.mu, mu) and np.array_equal(again.sigma, sigma)
    # our files stay readable by plain numpy / EDM's loader (mu and sigma keys, no pickle)
    with np.load(tmp_path / "copy.npz", allow_pickle=False) as raw:
        assert np.array_equal(raw["mu"], mu)


def test_adm_virtual_npz_with_images(tmp_path):
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    mu, sigma = rng.standard_normal(4), np.eye(4)
    np.savez(tmp_path / "VIRTUAL.npz", arr_0=imgs, mu=mu, sigma=sigma, mu_s=mu[:2], sigma_s=np.eye(2))
    ref = load_reference(tmp_path / "VIRTUAL.npz")
    assert ref.has_images and np.array_equal(ref.mu, mu)
    assert np.array_equal(reference_images(tmp_path / "VIRTUAL.npz"), imgs)
    _edm_npz(tmp_path / "edm.npz")
    with pytest.raises(AssetError, match="no reference images"):
        reference_images(tmp_path / "edm.npz")


def test_feature_stats_and_meta_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    stats = FeatureStats()
    stats.update(rng.standard_normal((300, 5)).astype(np.float32))
    meta = {"dataset_sha256": "ab" * 32, "extractor": {"name": "digits-classifier", "sha256": "cd" * 32},
            "protocol": {"name": "digits-fd", "version": "1.0.0"}, "note": "ünïcode"}
    save_reference(tmp_path / "ref.npz", stats, meta=meta)
    ref = load_reference(tmp_path / "ref.npz", expected_dim=5)
    assert ref.num_images == 300 and ref.meta["cov"] == "unbiased" and ref.meta["note"] == "ünïcode"
    assert ref.meta["extractor"] == meta["extractor"] and ref.meta["protocol"] == meta["protocol"]
    assert np.array_equal(ref.mu, stats.mean()) and np.array_equal(ref.sigma, stats.cov())
    assert fid_from_stats(ref.mu, ref.sigma, stats.mean(), stats.cov()) == pytest.approx(0, abs=1e-10)
    save_reference(tmp_path / "biased.npz", stats, unbiased=False)
    biased = load_reference(tmp_path / "biased.npz")
    assert biased.meta["cov"] == "biased" and np.array_equal(biased.sigma, stats.cov(unbiased=False))
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary file


def test_object_arrays_are_refused(tmp_path):
    np.savez(tmp_path / "evil.npz", mu=np.zeros(3), sigma=np.eye(3), extra=np.array([{"a": 1}], dtype=object))
    with pytest.raises(AssetError, match="Python objects"):
        load_reference(tmp_path / "evil.npz")
    np.savez(tmp_path / "evil2.npz", mu=np.array([1.0, "x"], dtype=object), sigma=np.eye(2))
    with pytest.raises(AssetError, match="'mu' holds Python objects"):
        load_reference(tmp_path / "evil2.npz")


def test_wrong_dimension_and_shapes(tmp_path):
    _edm_npz(tmp_path / "ref.npz", d=6)
    with pytest.raises(AssetError, match="holds 6-d statistics but the extractor gives 2048-d"):
        load_reference(tmp_path / "ref.npz", expected_dim=2048)
    np.savez(tmp_path / "bad.npz", mu=np.zeros(3), sigma=np.eye(4))
    with pytest.raises(AssetError, match="expected \\[D\\] and \\[D, D\\]"):
        load_reference(tmp_path / "bad.npz")


def test_missing_or_wrong_files(tmp_path):
    with pytest.raises(AssetError, match="not found"):
        load_reference(tmp_path / "nope.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(AssetError, match="not an .npz"):
        load_reference(tmp_path / "text.npz")
    np.savez(tmp_path / "keys.npz", mean=np.zeros(3))
    with pytest.raises(AssetError, match="has no mu or sigma"):
        load_reference(tmp_path / "keys.npz")
    bad_json = np.frombuffer(b"\xff{", np.uint8)
    np.savez(tmp_path / "meta.npz", mu=np.zeros(2), sigma=np.eye(2), meta_json=bad_json)
    with pytest.raises(AssetError, match="not valid UTF-8 JSON"):
        load_reference(tmp_path / "meta.npz")


def test_meta_is_json_bytes(tmp_path):
    stats = {"mu": np.zeros(2), "sigma": np.eye(2), "num_images": 7}
    save_reference(tmp_path / "r.npz", stats, meta={"k": 1})
    with np.load(tmp_path / "r.npz", allow_pickle=False) as raw:
        assert raw["meta_json"].dtype == np.uint8 and int(raw["num_images"]) == 7
        assert json.loads(raw["meta_json"].tobytes()) == {"k": 1, "num_images": 7}
