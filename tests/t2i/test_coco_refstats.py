"""COCO-2014's FID reference: computed once from val2014 into $SIDBENCH_CACHE with its sha256, found by
every run of the COCO suites, and refused when the file is no longer the one computed.

The suites expect all 40,504 val2014 images; here they expect the few images of a fake val2014 folder
(JPEG and PNG, colour and grey, of mixed sizes), patched into the registered suites. The extractor is
a tiny random network in NVIDIA's TorchScript layout (`layers`), so nothing is downloaded. The oracle
for the statistics is written out: PIL center crop + LANCZOS 256, clean-fid's own resizer, the
network, numpy's mean and unbiased covariance.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sidbench.api as api
from sidbench.assets import cache_dir
from sidbench.cli import main
from sidbench.errors import AssetError, ConfigError, DatasetError
from sidbench.fileio import sha256_file
from sidbench.metrics.reference import load_reference, save_reference
from sidbench.registry import SUITES
from sidbench.suites.resolve import check_reference, resolve_suite
from tests.metrics._random_weights import save_fake_cleanfid_inception

SD15, SD21 = "coco2014-sd15", "coco2014-sd21base"
NAME = "coco2014-val2014-fid30k-clean.npz"
# (height, width, mode, format): the crop offsets are whole numbers, so no rounding rule is tested here
IMAGES = [(30, 40, "RGB", "jpg"), (36, 24, "L", "jpg"), (33, 33, "RGB", "png"), (20, 50, "RGB", "png"),
          (40, 28, "L", "png"), (26, 26, "RGB", "jpg")]


@pytest.fixture(scope="module")
def extractor(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    return save_fake_cleanfid_inception(folder / "inception-2015-12-05.pt", seed=0)


def _write_images(folder: Path, specs, seed: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.RandomState(seed)
    for i, (h, w, mode, fmt) in enumerate(specs):
        shape = (h, w) if mode == "L" else (h, w, 3)
        img = Image.fromarray(rng.randint(0, 256, shape, dtype=np.uint8))
        img.save(folder / f"COCO_val2014_{i:012d}.{fmt}", **({"quality": 95} if fmt == "jpg" else {}))
    return folder


@pytest.fixture(scope="module")
def val2014(tmp_path_factory) -> Path:
    return _write_images(tmp_path_factory.mktemp("coco") / "val2014", IMAGES, 0)


@pytest.fixture(autouse=True)
def small_coco(monkeypatch):
    """The COCO suites, expecting the fake folder's image count instead of 40,504."""
    SUITES.names()  # load the registry before patching it
    for name in (SD15, SD21):
        s = SUITES.get(name)
        monkeypatch.setitem(SUITES._items, name,
                            dataclasses.replace(s, dataset=dataclasses.replace(s.dataset,
                                                                               num_images=len(IMAGES))))


def _oracle(folder: Path, weights: Path) -> tuple[np.ndarray, np.ndarray]:
    from cleanfid.resize import make_resizer

    net = torch.jit.load(str(weights))
    resize = make_resizer("PIL", False, "bicubic", (299, 299))  # clean-fid's "clean" mode
    feats = []
    for f in sorted(folder.iterdir()):
        im = Image.open(f).convert("RGB")
        w, h = im.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((256, 256), Image.LANCZOS)
        x = torch.from_numpy(resize(np.asarray(im))).permute(2, 0, 1)[None]
        with torch.no_grad():
            feats.append(net.layers((x - 128) / 128).double().numpy())
    f = np.concatenate(feats)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _compute(val2014: Path, extractor: Path, **kwargs):
    return api.refstats(val2014, suite=SD15, weights=extractor, batch_size=4, **kwargs)


def _one_line(text: str) -> None:
    assert text.count("\n") == 1 and "Traceback" not in text, text


def test_computed_once_into_the_cache_with_its_sha256_and_found_by_both_suites(val2014, extractor):
    meta = _compute(val2014, extractor)
    path = cache_dir() / NAME
    digest = sha256_file(path)
    assert meta["path"] == str(path) and meta["sha256"] == digest
    assert (cache_dir() / f"{NAME}.sha256").read_text() == f"{digest}  {NAME}\n"  # sha256sum -c format
    ref = load_reference(path)
    mu, sigma = _oracle(val2014, extractor)
    np.testing.assert_allclose(ref.mu, mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ref.sigma, sigma, rtol=1e-4, atol=1e-6)
    assert ref.num_images == len(IMAGES) and ref.meta["protocol"] == "coco2014-fid30k-clean"
    assert ref.meta["extractor"] == "clean-fid-inception"
    assert ref.meta["extractor_sha256"] == sha256_file(extractor)
    assert ref.meta["dataset_info"]["transform"] == "center-crop+lanczos-256"
    for name in (SD15, SD21):  # one val2014 reference serves both teachers
        assert resolve_suite(name, need=("ref",)).ref_stats == path
        assert check_reference(name, path).num_images == len(IMAGES)
    # the suite's other checks still hold for a file whose sidecar matches: a subset is not the reference
    from sidbench.suites.ref_cache import write_digest

    save_reference(path, {"mu": ref.mu, "sigma": ref.sigma, "num_images": len(IMAGES) - 1}, ref.meta)
    write_digest(path)
    with pytest.raises(AssetError, match=f"{len(IMAGES) - 1} images") as err:
        resolve_suite(SD15, need=("ref",))
    assert f"--suite {SD15} --force" in str(err.value)


def test_a_second_compute_is_refused_before_any_work_unless_forced(val2014, extractor, monkeypatch):
    _compute(val2014, extractor)
    path = cache_dir() / NAME
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise AssertionError("work started before the existing file was refused")

    import sidbench.metrics.evaluate as evaluate

    with monkeypatch.context() as m:
        m.setattr(evaluate, "compute_reference", boom)
        with pytest.raises(ConfigError, match="already computed") as err:
            _compute(val2014, extractor)
        assert "--force" in str(err.value) and path.read_bytes() == before
        with pytest.raises(ConfigError, match="already computed"):  # before the dataset is looked for
            api.refstats(suite=SD15, weights=extractor)
    save_reference(path, {"mu": np.zeros(2048), "sigma": np.eye(2048), "num_images": len(IMAGES)},
                   {"extractor": "clean-fid-inception", "feature_key": "pool"})  # a wrong file in its place
    with pytest.raises(AssetError, match="modified or truncated"):
        resolve_suite(SD15, need=("ref",))
    meta = _compute(val2014, extractor, force=True)
    assert meta["sha256"] == sha256_file(path) == (cache_dir() / f"{NAME}.sha256").read_text().split()[0]
    np.testing.assert_allclose(load_reference(path).mu, _oracle(val2014, extractor)[0], rtol=1e-5, atol=1e-6)
    assert resolve_suite(SD15, need=("ref",)).ref_stats == path


@pytest.mark.parametrize("damage", ["other-valid-stats", "truncated", "no-sidecar", "bad-sidecar"])
def test_a_changed_cached_file_is_one_line_saying_to_recompute(damage, val2014, extractor, capsys):
    _compute(val2014, extractor)
    path, side = cache_dir() / NAME, cache_dir() / f"{NAME}.sha256"
    ref = load_reference(path)
    if damage == "other-valid-stats":  # still a loadable npz of the right shape: only the sha256 tells
        save_reference(path, {"mu": ref.mu + 1e-3, "sigma": ref.sigma, "num_images": ref.num_images},
                       ref.meta)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "no-sidecar":
        side.unlink()
    else:
        side.write_text("not a digest\n")
    expected = {"other-valid-stats": "modified or truncated", "truncated": "modified or truncated",
                "no-sidecar": "no recorded sha256", "bad-sidecar": "recorded sha256 .* is lost"}[damage]
    for name in (SD15, SD21):
        with pytest.raises(AssetError, match=expected) as err:
            resolve_suite(name, need=("ref",))
        assert f"sidbench refstats VAL2014_DIR --suite {name} --force" in str(err.value)
    with pytest.raises(AssetError, match=expected):  # also when only found, and checked
        resolve_suite(SD15)
    with pytest.raises(AssetError, match=expected):  # the same file given by path is the cached one
        check_reference(SD15, path)
    rc = main(["eval", "--images", str(val2014), "--suite", SD15, "--metrics", "fid",
               "--torchscript-inception", str(extractor)])
    err = capsys.readouterr().err
    assert rc == 1 and "recompute" in err
    _one_line(err)


def test_missing_statistics_name_the_command_that_computes_them(val2014, extractor, tmp_path):
    for name in (SD15, SD21):
        with pytest.raises(AssetError) as err:
            resolve_suite(name, need=("ref",))
        text = str(err.value)
        assert f"`sidbench refstats VAL2014_DIR --suite {name}`" in text and str(cache_dir() / NAME) in text
        assert resolve_suite(name).ref_stats is None  # not needed: not an error
    few = _write_images(tmp_path / "val2014", IMAGES[:-1], 1)  # one image missing
    with pytest.raises(DatasetError, match=f"holds {len(IMAGES) - 1} images, COCO val2014 has {len(IMAGES)}"):
        _compute(few, extractor)
    with pytest.raises(AssetError, match="val2014 not found"):  # no folder given, none in the cache
        api.refstats(suite=SD15, weights=extractor)
    assert not (cache_dir() / NAME).exists() and not (cache_dir() / f"{NAME}.sha256").exists()


def test_out_stays_required_for_other_suites_and_other_requests(val2014, extractor, tmp_path, capsys):
    with pytest.raises(ConfigError, match="--out is required: suite digits has no cached"):
        api.refstats(suite="digits")
    with pytest.raises(ConfigError, match="--out is required"):
        api.refstats(val2014)
    rc = main(["refstats", "--suite", "digits"])
    err = capsys.readouterr().err
    assert rc == 1 and "--out is required" in err
    _one_line(err)
    with pytest.raises(ConfigError, match="--max-images makes a subset"):
        _compute(val2014, extractor, max_images=3)
    with pytest.raises(ConfigError, match="are coco2014-fid30k-clean statistics, not edm-fid50k"):
        _compute(val2014, extractor, protocol="edm-fid50k")
    out = _compute(val2014, extractor, out=tmp_path / "elsewhere.npz", max_images=3)  # --out: as asked
    assert out["path"] == str(tmp_path / "elsewhere.npz") and "sha256" not in out
    assert load_reference(tmp_path / "elsewhere.npz").num_images == 3 and not (cache_dir() / NAME).exists()


def test_cli_and_python_agree(val2014, extractor, tmp_path, monkeypatch, capsys):
    rc = main(["refstats", str(val2014), "--suite", SD15, "--weights", str(extractor), "--batch-size", "4"])
    err = capsys.readouterr().err
    cli_path = cache_dir() / NAME
    digest = sha256_file(cli_path)
    assert rc == 0 and f"wrote {cli_path} (sha256 {digest}" in err
    rc = main(["refstats", str(val2014), "--suite", SD15, "--weights", str(extractor)])
    err = capsys.readouterr().err
    assert rc == 1 and "--force" in err and sha256_file(cli_path) == digest
    _one_line(err)
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "other-cache"))
    meta = _compute(val2014, extractor)
    cli, py = load_reference(cli_path), load_reference(meta["path"])
    assert np.array_equal(cli.mu, py.mu) and np.array_equal(cli.sigma, py.sigma) and cli.meta == py.meta
    # same batch size: CPU kernels are not bit-identical across batch sizes (tests/metrics/test_evaluate.py)
    assert main(["refstats", str(val2014), "--suite", SD15, "--weights", str(extractor), "--batch", "4",
                 "--force"]) == 0
    assert np.array_equal(load_reference(meta["path"]).sigma, py.sigma)
    assert (cache_dir() / f"{NAME}.sha256").read_text().split()[0] == sha256_file(meta["path"])


def test_eval_and_training_find_the_cached_file_and_record_its_sha256(val2014, extractor, monkeypatch):
    digest = _compute(val2014, extractor)["sha256"]
    path = cache_dir() / NAME
    result = api.evaluate(images=val2014, suite=SD15, metrics="fid", torchscript_inception=extractor)
    assert result["reference"]["path"] == str(path) and result["reference"]["sha256"] == digest
    fid = result["metrics"]["fid"]
    assert fid["reference_sha256"] == digest and fid["protocol"]["name"] == "coco2014-fid30k-clean"
    # the reference images themselves, through the same crop and extractor: FID 0 up to rounding
    assert fid["value"] < 1e-6 * np.trace(load_reference(path).sigma)

    import sidbench.train.evaluation as evaluation
    from sidbench.train import load_recipe

    monkeypatch.setattr(evaluation, "eval_captions", lambda suite, count: ["a photo"] * count)
    config = load_recipe(Path(__file__).parents[2] / "recipes" / "sid-lsg-coco2014-sd15-kappa2.yaml")
    method = config.get_method()
    plan = evaluation.Evaluator(config, method, torch.device("cpu"), method.product_role).plan()
    assert plan["reference_stats"] == str(path)  # distill needs no --ref


def test_an_unwritable_cache_is_refused_before_any_work(val2014, extractor, monkeypatch):
    import sidbench.metrics.evaluate as evaluate
    from tests._outputs import make_read_only

    def boom(*args, **kwargs):
        raise AssertionError("work started before the cache folder was checked")

    monkeypatch.setattr(evaluate, "compute_reference", boom)
    folder = make_read_only(cache_dir(), monkeypatch)
    try:
        with pytest.raises(ConfigError, match="not writable|read-only") as err:
            _compute(val2014, extractor)
        assert str(folder) in str(err.value)
    finally:
        folder.chmod(0o755)
