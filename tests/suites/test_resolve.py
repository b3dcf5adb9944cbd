"""`--suite`: a suite's teacher, data and reference statistics are found by name or path, and refused
when they are not the suite's (one line naming the fact and both values)."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from sidbench.assets import ASSETS, cache_dir, converted_dir
from sidbench.errors import AssetError, ConfigError, DatasetError
from sidbench.nets.native import read_network_record
from sidbench.suites.base import DatasetIdentity, Suite, get_suite
from sidbench.suites.digits import REF_STATS, TEACHER_DIR
from sidbench.suites.resolve import (
    SuiteAssets,
    check_reference,
    check_suite_dataset,
    check_teacher,
    resolve_network,
    resolve_suite,
)

EDM_SUITES = ["cifar10-uncond", "cifar10-cond", "imagenet64-cond", "ffhq64", "afhqv2-64"]


# --- tiny EDM dataset_tool zips -------------------------------------------------------------------

def _png(i: int, res: int, channels: int) -> bytes:
    rng = np.random.default_rng(i)
    shape = (res, res) if channels == 1 else (res, res, channels)
    buf = io.BytesIO()
    PIL.Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def edm_zip(path: Path, n: int, res: int = 64, channels: int = 3, labels: list[int] | None = None) -> Path:
    """An EDM dataset_tool zip: 00000/img%08d.png (+ dataset.json with labels)."""
    names = [f"00000/img{i:08d}.png" for i in range(n)]
    with zipfile.ZipFile(path, "w") as zf:
        for i, name in enumerate(names):
            zf.writestr(name, _png(i, res, channels))
        if labels is not None:
            pairs = [[name, label] for name, label in zip(names, labels, strict=True)]
            zf.writestr("dataset.json", json.dumps({"labels": pairs}))
    return path


def tiny_suite(num_images: int = 6, label_dim: int = 0, sha256: str | None = None) -> Suite:
    """A suite like afhqv2-64 but with a dataset small enough to write in a test."""
    afhq = get_suite("afhqv2-64")
    ident = DatasetIdentity(name="tiny-64x64", filename="tiny-64x64.zip", num_images=num_images,
                            resolution=64, channels=3, label_dim=label_dim, sha256=sha256)
    return dataclasses.replace(afhq, name="tiny", dataset=ident)


# --- datasets --------------------------------------------------------------------------------------

def test_ffhq_like_zip_given_to_afhqv2_is_refused_naming_the_count(tmp_path):
    zpath = edm_zip(tmp_path / "ffhq-64x64.zip", 6)  # same resolution and channels, another dataset
    with pytest.raises(DatasetError) as err:
        check_suite_dataset("afhqv2-64", zpath)
    msg = str(err.value)
    assert "afhqv2-64x64" in msg and "6 images (expected 15,803)" in msg and "resolution" not in msg
    assert "\n" not in msg


def test_the_suites_own_dataset_passes_and_is_returned_open(tmp_path):
    zpath = edm_zip(tmp_path / "tiny-64x64.zip", 6)
    with check_suite_dataset(tiny_suite(), zpath, xflip=True) as ds:
        assert (ds.num_images, len(ds), ds.resolution, ds.channels) == (6, 12, 64, 3)
        assert ds[0][0].shape == (3, 64, 64)


@pytest.mark.parametrize("n,res,channels,fact", [
    (7, 64, 3, "7 images (expected 6)"),
    (6, 32, 3, "resolution 32 (expected 64)"),
    (6, 64, 1, "1 channel(s) (expected 3)"),
])
def test_each_wrong_fact_of_a_dataset_is_named(tmp_path, n, res, channels, fact):
    zpath = edm_zip(tmp_path / "tiny-64x64.zip", n, res=res, channels=channels)
    with pytest.raises(DatasetError, match=fact.replace("(", r"\(").replace(")", r"\)")):
        check_suite_dataset(tiny_suite(), zpath)


def test_pinned_dataset_sha256_is_checked(tmp_path):
    zpath = edm_zip(tmp_path / "tiny-64x64.zip", 6)
    from sidbench.fileio import sha256_file

    check_suite_dataset(tiny_suite(sha256=sha256_file(zpath)), zpath).close()
    with pytest.raises(DatasetError, match="sha256"):
        check_suite_dataset(tiny_suite(sha256="0" * 64), zpath)


def test_labels_follow_the_suite(tmp_path):
    labels = [0, 1, 2, 3, 4, 5]
    labeled = edm_zip(tmp_path / "tiny-64x64.zip", 6, labels=labels)
    # an unconditional suite ignores the labels in the zip (CIFAR-10's zip serves both suites)
    check_suite_dataset(tiny_suite(), labeled).close()
    with check_suite_dataset(tiny_suite(label_dim=6), labeled) as ds:
        assert ds.label_dim == 6
    (tmp_path / "other").mkdir()
    unlabeled = edm_zip(tmp_path / "other" / "tiny-64x64.zip", 6)
    with pytest.raises(DatasetError, match="no labels"):
        check_suite_dataset(tiny_suite(label_dim=6), unlabeled)


def test_dataset_is_found_in_the_cache_by_its_file_name():
    zpath = edm_zip(cache_dir() / "afhqv2-64x64.zip", 6)
    assert resolve_suite("afhqv2-64", need=["dataset"]).dataset == zpath
    with pytest.raises(DatasetError, match="15,803"):
        check_suite_dataset("afhqv2-64")  # found in the cache, and still checked


def test_packaged_dataset_opens_without_a_path():
    with check_suite_dataset("digits") as ds:
        assert (ds.num_images, ds.resolution, ds.label_dim) == (1797, 16, 10)
    assert resolve_suite("digits", need=["dataset"]).dataset is None  # ships with scikit-learn


@pytest.mark.parametrize("name", ["cifar10-uncond", "imagenet64-cond", "ffhq64", "afhqv2-64"])
def test_missing_dataset_says_what_to_put_where(name):
    ident = get_suite(name).dataset
    with pytest.raises(AssetError) as err:
        resolve_suite(name, need=["dataset"])
    text = str(err.value)
    assert ident.filename in text and str(cache_dir()) in text and f"{ident.num_images:,}" in text
    if name.startswith("cifar10"):  # the python tarball is an alternative, with its URL
        assert "cifar-10-python.tar.gz" in text and ASSETS["cifar10-tarball"].url in text


def test_explicit_dataset_path_must_exist(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        resolve_suite("afhqv2-64", dataset=tmp_path / "nope.zip")


def test_suite_without_images_has_no_dataset_to_open():
    with pytest.raises(ConfigError, match="no image dataset"):
        check_suite_dataset("toy2d")
    with pytest.raises(ConfigError, match="no image dataset"):
        resolve_suite("toy2d", need=["dataset"])


# --- teachers --------------------------------------------------------------------------------------

def test_named_packaged_teacher_resolves():
    assert resolve_network("digits") == TEACHER_DIR
    assert resolve_network(TEACHER_DIR) == TEACHER_DIR
    assert resolve_network(TEACHER_DIR / "network.json") == TEACHER_DIR
    assert resolve_suite("digits", need=["teacher"]).teacher == TEACHER_DIR


def _cifar_like_teacher(out: Path, label_dim: int = 0) -> Path:
    """A tiny native network with the facts of EDM's CIFAR-10 teachers (EDMPrecond, SongUNet, 32x32x3)."""
    import torch

    from sidbench.nets.build import build_network
    from sidbench.nets.native import save_network

    config = {"class_name": "EDMPrecond",
              "init_kwargs": {"img_resolution": 32, "img_channels": 3, "label_dim": label_dim,
                              "model_type": "SongUNet", "model_channels": 16, "channel_mult": [1],
                              "num_blocks": 1, "attn_resolutions": []}}
    torch.manual_seed(0)
    save_network(build_network(config), config, out, source={"file": "edm-cifar10-32x32-uncond-vp.pkl"})
    return out


@pytest.mark.parametrize("name", ["cifar10-uncond", "edm-cifar10-uncond"])
def test_converted_teacher_in_the_cache_resolves_by_suite_and_asset_name(name):
    folder = _cifar_like_teacher(converted_dir("edm-cifar10-uncond"))
    assert folder == cache_dir() / "edm-cifar10-32x32-uncond-vp"
    assert resolve_network(name) == folder
    assert resolve_suite("cifar10-uncond", need=["teacher"]).teacher == folder


@pytest.mark.parametrize("name", EDM_SUITES)
def test_unconverted_teacher_names_the_pickle_the_command_and_the_folder(name):
    asset = ASSETS[get_suite(name).teacher.asset]
    with pytest.raises(AssetError) as err:
        resolve_network(name)
    text = str(err.value)
    assert asset.filename in text and asset.url in text and "--trust-pickle" in text
    assert f"sidbench convert {asset.filename}" in text and str(converted_dir(asset.name)) in text
    with pytest.raises(AssetError, match=asset.filename):
        resolve_suite(name, need=["teacher"])
    assert resolve_suite(name).teacher is None  # not needed: not an error


def test_pickle_in_the_cache_is_named_with_its_path():
    pkl = cache_dir() / "edm-cifar10-32x32-uncond-vp.pkl"
    pkl.parent.mkdir(parents=True, exist_ok=True)
    pkl.write_bytes(b"not read")
    with pytest.raises(AssetError) as err:
        resolve_network("cifar10-uncond")
    assert "not converted" in str(err.value) and f"sidbench convert {pkl} --trust-pickle" in str(err.value)
    with pytest.raises(AssetError, match="is a pickle"):
        resolve_network(pkl)


@pytest.mark.parametrize("bad,match", [
    ("cifar10-uncnd", "Did you mean 'cifar10-uncond'"),
    ("runs/nowhere/network.json", "does not exist"),
])
def test_unknown_network_names_are_refused(bad, match):
    with pytest.raises(AssetError, match=match):
        resolve_network(bad)


def test_folder_without_a_network_is_refused(tmp_path):
    with pytest.raises(AssetError, match="no network.json"):
        resolve_network(tmp_path)


def test_teachers_that_are_not_shipped_or_native_say_how_to_get_them():
    with pytest.raises(AssetError, match="train-teacher --suite toy2d"):
        resolve_network("toy2d")
    with pytest.raises(ConfigError, match="diffusers"):
        resolve_network("coco2014-sd15")


def _digits_record() -> dict:
    return read_network_record(TEACHER_DIR)


@pytest.mark.parametrize("change,fact", [
    ({"class_name": "VPPrecond"}, "preconditioner VPPrecond (suite: EDMPrecond)"),
    ({"img_resolution": 32}, "resolution 32 (suite: 16)"),
    ({"img_channels": 3}, "channels 3 (suite: 1)"),
    ({"label_dim": 0}, "label_dim 0 (suite: 10)"),
    ({"model_type": "DhariwalUNet"}, "architecture DhariwalUNet (suite: SongUNet)"),
])
def test_teacher_mismatch_is_refused_per_fact(change, fact):
    record = _digits_record()
    check_teacher("digits", record)
    if "class_name" in change:
        record["class_name"] = change["class_name"]
    else:
        record["init_kwargs"] = {**record["init_kwargs"], **change}
    with pytest.raises(AssetError) as err:
        check_teacher("digits", record, where="teacher X")
    msg = str(err.value)
    assert fact in msg and msg.startswith("teacher X is not suite digits's teacher")
    assert msg.count("(suite:") == 1  # only the fact that differs


def test_teacher_defaults_and_edm_class_paths_are_understood():
    record = _digits_record()
    record["class_name"] = "training.networks.EDMPrecond"  # as EDM's pickles name it
    check_teacher("digits", record)
    kwargs = dict(record["init_kwargs"])
    del kwargs["label_dim"]  # EDMPrecond's default: unconditional
    with pytest.raises(AssetError, match="label_dim 0"):
        check_teacher("digits", {"class_name": "EDMPrecond", "init_kwargs": kwargs})


def test_wrong_teacher_for_a_suite_is_refused_when_resolving(tmp_path):
    uncond = _cifar_like_teacher(tmp_path / "uncond")
    assert resolve_suite("cifar10-uncond", teacher=uncond).teacher == uncond  # explicit path wins
    with pytest.raises(AssetError, match="label_dim 0 \\(suite: 10\\)"):
        resolve_suite("cifar10-cond", teacher=uncond)
    with pytest.raises(AssetError, match="resolution 16 \\(suite: 32\\)"):
        resolve_suite("cifar10-uncond", teacher="digits")


def test_pinned_teacher_pickle_hash_is_compared(monkeypatch):
    record = {"class_name": "EDMPrecond",
              "init_kwargs": {"img_resolution": 32, "img_channels": 3, "label_dim": 0,
                              "model_type": "SongUNet"},
              "source": {"file": "edm-cifar10-32x32-uncond-vp.pkl", "sha256": "ab" * 32}}
    check_teacher("cifar10-uncond", record)  # nothing pinned
    asset = ASSETS["edm-cifar10-uncond"]
    monkeypatch.setitem(ASSETS, asset.name, dataclasses.replace(asset, sha256="cd" * 32))
    with pytest.raises(AssetError, match="sha256"):
        check_teacher("cifar10-uncond", record)


def test_non_native_teacher_cannot_be_checked_as_a_network():
    with pytest.raises(ConfigError, match="diffusers"):
        check_teacher("coco2014-sd15", _digits_record())


# --- reference statistics --------------------------------------------------------------------------

def test_packaged_reference_resolves_and_matches():
    assets = resolve_suite("digits", need=["teacher", "ref", "dataset"])
    assert isinstance(assets, SuiteAssets) and assets.ref_stats == REF_STATS
    assert check_reference("digits", REF_STATS).dim == 128


def _save_ref(path: Path, dim: int, meta: dict | None = None, num: int | None = None) -> Path:
    from sidbench.metrics.reference import save_reference

    stats = {"mu": np.zeros(dim), "sigma": np.eye(dim)}
    if num is not None:
        stats["num_images"] = num
    save_reference(path, stats, meta=meta)
    return path


@pytest.mark.parametrize("dim,meta,num,fact", [
    (16, None, None, "16-d features"),
    (128, {"extractor": "inception-v3-compat"}, None, "extractor inception-v3-compat"),
    (128, {"feature_key": "logits"}, None, "feature layer 'logits'"),
    (128, None, 1000, "1,000 images (suite dataset sklearn-digits: 1,797)"),
])
def test_reference_that_is_not_the_suites_is_refused_per_fact(tmp_path, dim, meta, num, fact):
    ref = _save_ref(tmp_path / "ref.npz", dim, meta, num)
    with pytest.raises(AssetError) as err:
        check_reference("digits", ref)
    assert fact in str(err.value) and "digits" in str(err.value)
    with pytest.raises(AssetError, match=fact.split(" (")[0]):
        resolve_suite("digits", ref=ref)


def test_edm_reference_dims_and_pinned_hash(tmp_path, monkeypatch):
    ref = _save_ref(tmp_path / "cifar10-32x32.npz", 64)
    with pytest.raises(AssetError, match="2048-d inception-v3-compat 'pool'"):
        check_reference("cifar10-uncond", ref)
    asset = ASSETS["ref-cifar10"]
    monkeypatch.setitem(ASSETS, asset.name, dataclasses.replace(asset, sha256="0" * 64))
    with pytest.raises(AssetError, match="sha256"):
        check_reference("cifar10-uncond", ref)


@pytest.mark.parametrize("name", ["cifar10-uncond", "imagenet64-cond", "ffhq64", "afhqv2-64"])
def test_missing_reference_says_what_to_put_where(name):
    asset = ASSETS[get_suite(name).ref_stats]
    with pytest.raises(AssetError) as err:
        resolve_suite(name, need=["ref"])
    text = str(err.value)
    assert asset.filename in text and asset.url in text and str(cache_dir()) in text


def test_reference_found_in_the_cache_is_checked():
    _save_ref(cache_dir() / "ffhq-64x64.npz", 10)
    with pytest.raises(AssetError, match="10-d features"):
        resolve_suite("ffhq64")
    assert resolve_suite("ffhq64", check=False).ref_stats == cache_dir() / "ffhq-64x64.npz"


def test_computed_and_exact_references():
    with pytest.raises(AssetError, match="sidbench refstats"):
        resolve_suite("coco2014-sd15", need=["ref"])
    with pytest.raises(ConfigError, match="exact"):
        resolve_suite("toy2d", need=["ref"])


def test_explicit_reference_path_must_exist(tmp_path):
    with pytest.raises(AssetError, match="not found"):
        resolve_suite("digits", ref=tmp_path / "nope.npz")


def test_need_accepts_the_field_name_of_the_reference():
    assert resolve_suite("digits", need=["ref_stats"]).ref_stats == REF_STATS
    with pytest.raises(AssetError, match="cifar10-32x32.npz"):
        resolve_suite("cifar10-uncond", need=("ref_stats",))


def test_unknown_need_is_refused():
    with pytest.raises(ConfigError, match="Did you mean 'teacher'"):
        resolve_suite("digits", need=["teachers"])

