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


# -- npz files that would make FID meaningless: one-line AssetError each, never a traceback ----------
def _npz_cases(d=3):
    a = np.random.default_rng(5).standard_normal((d, d))
    good_mu, good_sigma = np.zeros(d), a @ a.T + np.eye(d)
    non_psd = good_sigma.copy()
    non_psd[0, 0] = -5.0
    asym = good_sigma.copy()
    asym[0, 1] += 1.0
    good = {"mu": good_mu, "sigma": good_sigma}
    return {
        "string-mu": ({"mu": np.array(["a", "b", "c"]), "sigma": good_sigma}, "expected real numbers"),
        "bytes-sigma": ({"mu": good_mu, "sigma": np.full((d, d), b"x")}, "expected real numbers"),
        "complex-sigma": ({"mu": good_mu, "sigma": good_sigma.astype(complex)}, "expected real numbers"),
        "bool-mu": ({"mu": np.zeros(d, bool), "sigma": good_sigma}, "expected real numbers"),
        "0-d-mu": ({"mu": np.float64(0.0), "sigma": good_sigma}, r"expected \[D\] and \[D, D\]"),
        "0-d-sigma": ({"mu": good_mu, "sigma": np.float64(1.0)}, r"expected \[D\] and \[D, D\]"),
        "2-d-mu": ({"mu": np.zeros((d, 1)), "sigma": good_sigma}, r"expected \[D\] and \[D, D\]"),
        "empty": ({"mu": np.zeros(0), "sigma": np.zeros((0, 0))}, "non-empty vector"),
        "nan-mu": ({"mu": np.array([0.0, np.nan, 0.0]), "sigma": good_sigma}, "NaN or Inf"),
        "inf-sigma": ({"mu": good_mu, "sigma": np.full((d, d), np.inf)}, "NaN or Inf"),
        "non-psd": ({"mu": good_mu, "sigma": non_psd}, "not positive semi-definite"),
        "non-symmetric": ({"mu": good_mu, "sigma": asym}, "not symmetric"),
        "num-string": ({**good, "num_images": np.array("many")}, "positive integer"),
        "num-vector": ({**good, "num_images": np.array([1, 2])}, "positive integer"),
        "num-float": ({**good, "num_images": np.array(3.5)}, "positive integer"),
        "num-zero": ({**good, "num_images": np.array(0)}, "positive integer"),
        "meta-floats": ({**good, "meta_json": np.zeros(4)}, "expected UTF-8 JSON"),
        "meta-list": ({**good, "meta_json": np.frombuffer(b"[1, 2]", np.uint8)}, "expected an object"),
    }


@pytest.mark.parametrize("case", list(_npz_cases()))
def test_meaningless_npz_contents_are_one_line_errors(tmp_path, case):
    arrays, message = _npz_cases()[case]
    np.savez(tmp_path / "ref.npz", **arrays)
    with pytest.raises(AssetError, match=message) as info:
        load_reference(tmp_path / "ref.npz")
    assert str(tmp_path / "ref.npz") in str(info.value) and "\n" not in str(info.value)


def test_damaged_npz_member_is_an_asset_error(tmp_path):
    import zipfile

    np.savez(tmp_path / "ok.npz", mu=np.zeros(2), sigma=np.eye(2))
    with zipfile.ZipFile(tmp_path / "ok.npz") as src, zipfile.ZipFile(tmp_path / "bad.npz", "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data[:20] if item.filename == "sigma.npy" else data)  # truncated array
    with pytest.raises(AssetError, match="'sigma' cannot be read"):
        load_reference(tmp_path / "bad.npz")


def test_save_refuses_statistics_load_would_refuse(tmp_path):
    from sidbench.errors import ConfigError

    with pytest.raises(ConfigError, match="not writing .*not positive semi-definite"):
        save_reference(tmp_path / "r.npz", {"mu": np.zeros(2), "sigma": np.diag([1.0, -1.0])})
    with pytest.raises(ConfigError, match="not writing .*expected real numbers"):
        save_reference(tmp_path / "r.npz", {"mu": np.array(["a", "b"]), "sigma": np.eye(2)})
    assert not (tmp_path / "r.npz").exists()


def test_meta_non_finite_values_use_the_one_json_spelling(tmp_path):
    save_reference(tmp_path / "r.npz", {"mu": np.zeros(2), "sigma": np.eye(2)}, meta={"gamma": float("inf")})
    with np.load(tmp_path / "r.npz", allow_pickle=False) as raw:
        assert json.loads(raw["meta_json"].tobytes())["gamma"] == "inf"  # valid JSON, not `Infinity`
    assert load_reference(tmp_path / "r.npz").meta["gamma"] == float("inf")
