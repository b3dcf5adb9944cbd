"""Feature extractors: safe weight loading, TF32 handling, clean-fid and open_clip equivalence."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sidbench.errors import AssetError, CheckpointError, ConfigError

sys.path.insert(0, str(Path(__file__).parent))
from _random_weights import make_malicious_pickle, save_fake_cleanfid_inception, save_random_inception  # noqa: E402


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    return save_random_inception(tmp_path_factory.mktemp("incep") / "random-inception.pth", seed=1)


# ------------------------------------------------------------------ weights files ----

def test_missing_weights_error_names_file_url_and_hash(tmp_path):
    from sidbench.metrics.extractors.inception import InceptionV3Compat

    with pytest.raises(AssetError) as info:
        InceptionV3Compat()  # nothing in $SIDBENCH_CACHE (tests use an empty temp cache)
    text = str(info.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in text
    assert "6726825d" in text and "github.com/toshas/torch-fidelity" in text
    with pytest.raises(AssetError, match="nope.pth"):
        InceptionV3Compat(tmp_path / "nope.pth")


@pytest.mark.parametrize("module, cls", [("inception", "InceptionV3Compat"), ("vgg16", "VGG16")])
def test_malicious_pickle_is_refused_and_never_executed(tmp_path, module, cls):
    import importlib

    marker = tmp_path / "pwned"
    evil = make_malicious_pickle(tmp_path / "evil.pth", marker)
    extractor = getattr(importlib.import_module(f"sidbench.metrics.extractors.{module}"), cls)
    with pytest.raises(CheckpointError, match="weights_only"):
        extractor(evil)
    assert not marker.exists()


def test_weights_from_cache_folder(inception_weights, monkeypatch, tmp_path):
    import shutil

    from sidbench.metrics.extractors.inception import InceptionV3Compat

    shutil.copy(inception_weights, tmp_path / "weights-inception-2015-12-05-6726825d.pth")
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path))
    ext = InceptionV3Compat()
    assert not ext.weights_official  # random weights: hash differs from the published file
    assert ext.weights_sha256 == __import__("sidbench.fileio").fileio.sha256_file(inception_weights)


# ------------------------------------------------------------------- inception ----

def test_inception_features_match_torch_fidelity_module(inception_weights):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from sidbench.metrics.extractors.inception import InceptionV3Compat

    ext = InceptionV3Compat(inception_weights)
    assert ext.feature_dims == {"pool": 2048, "logits": 1008} and ext.input_size == 299
    ref = FeatureExtractorInceptionV3("x", ["2048", "logits_unbiased"],
                                      feature_extractor_weights_path=str(inception_weights))
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = ext(x)
    pool, logits = ref(x)
    assert torch.equal(out["pool"], pool) and torch.equal(out["logits"], logits)
    assert out["pool"].std() > 1e-3  # He scaling keeps the features alive
    # per-image features do not depend on the batch they were computed in (CPU)
    single = torch.cat([ext(x[i:i + 1])["pool"] for i in range(3)])
    assert torch.equal(single, out["pool"])
    # grayscale images are read as RGB
    gray = x[:, :1]
    assert torch.equal(ext(gray)["pool"], ext(gray.expand(-1, 3, -1, -1).contiguous())["pool"])


def test_float_images_are_refused(inception_weights):
    from sidbench.metrics.extractors.inception import InceptionV3Compat

    with pytest.raises(ConfigError, match="uint8"):
        InceptionV3Compat(inception_weights)(torch.rand(1, 3, 8, 8))


# ------------------------------------------------------------------------ TF32 ----

def test_tf32_disabled_during_extraction_and_restored(inception_weights):
    from sidbench.metrics.extractors import FeatureExtractor, tf32_disabled, tf32_enabled
    from sidbench.metrics.extractors.base import _set_tf32_flags, _tf32_flags

    seen = []

    class Probe(FeatureExtractor):
        name, feature_dims = "probe", {"x": 1}

        def _extract(self, images):
            seen.append(tf32_enabled())
            return {"x": images.float().mean(dim=(1, 2, 3))[:, None]}

    saved = _tf32_flags()
    try:
        on = {k: (True if isinstance(v, bool) else "tf32") for k, v in saved.items()}
        _set_tf32_flags(on)
        before = _tf32_flags()
        Probe()(torch.zeros(2, 3, 4, 4, dtype=torch.uint8))
        assert seen == [False]
        assert _tf32_flags() == before and tf32_enabled()
        with pytest.raises(RuntimeError), tf32_disabled():  # restored on error too
            raise RuntimeError("boom")
        assert _tf32_flags() == before
    finally:
        _set_tf32_flags(saved)


# ------------------------------------------------------------------- clean-fid ----

def test_clean_mode_matches_clean_fid(tmp_path):
    from cleanfid.fid import get_folder_features
    from cleanfid.inception_torchscript import InceptionV3W
    from PIL import Image

    from sidbench.metrics.extractors.cleanfid_inception import CleanFIDInception
    from sidbench.metrics.image_source import FileImageSource

    save_fake_cleanfid_inception(tmp_path / "inception-2015-12-05.pt", seed=0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.RandomState(0)
    for i in range(5):
        Image.fromarray(rng.randint(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"{i:06d}.png")
    model = InceptionV3W(str(tmp_path), download=False, resize_inside=False).eval()
    theirs = get_folder_features(str(folder), model, num_workers=0, batch_size=2, device=torch.device("cpu"),
                                 mode="clean", verbose=False)
    ext = CleanFIDInception(tmp_path / "inception-2015-12-05.pt")
    src = FileImageSource(folder)
    ours = torch.cat([ext(imgs)["pool"] for _, imgs in src.batches(3, 0, 1)]).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert ext.name == "clean-fid-inception" and len(ext.weights_sha256) == 64


# ------------------------------------------------------------------------ CLIP ----

TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def test_clip_extractor_matches_direct_cosine(tmp_path):
    import json

    import open_clip
    from PIL import Image

    from sidbench.metrics.clip_score import clip_score
    from sidbench.metrics.extractors.clip import ClipExtractor

    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "sidbench-tiny-clip.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(tmp_path / "cfg")
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("sidbench-tiny-clip", pretrained=None)
    model.eval()
    torch.save(model.state_dict(), tmp_path / "tiny.pt")
    ext = ClipExtractor("sidbench-tiny-clip", tmp_path / "tiny.pt")
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (3, 3, 40, 48), dtype=torch.uint8, generator=g)
    captions = ["a cat", "two dogs on a sofa", "a red car"]
    img = ext(images)["image"]
    txt = ext.encode_text(["A photo depicts " + c for c in captions])  # texts as given: the metric prefixes
    # direct computation with open_clip's own objects
    tok = open_clip.get_tokenizer("sidbench-tiny-clip")
    with torch.no_grad():
        x = torch.stack([preprocess(Image.fromarray(im.permute(1, 2, 0).numpy())) for im in images])
        ie = model.encode_image(x)
        te = model.encode_text(tok(["A photo depicts " + c for c in captions]))
    direct = torch.nn.functional.cosine_similarity(ie.double(), te.double()).mean().item()
    assert clip_score(img, txt).value == pytest.approx(direct, rel=1e-6)
    assert ext.feature_dims == {"image": 16}
    with pytest.raises(CheckpointError, match="does not fit"):
        torch.save({"visual.proj": torch.zeros(1)}, tmp_path / "bad.pt")
        ClipExtractor("sidbench-tiny-clip", tmp_path / "bad.pt")


# --------------------------------------------------------------------- registry ----

def test_unknown_extractor_name_suggests():
    from sidbench.metrics.extractors import build_extractor

    with pytest.raises(ConfigError, match="inception-v3-compat"):
        build_extractor("inception-v3-compt")


def test_digits_classifier_adapter():
    from sidbench.suites import digits_classifier as dc

    if not dc.CLASSIFIER_WEIGHTS.is_file():
        pytest.skip("digits classifier weights not shipped yet")
    from sidbench.metrics.extractors import build_extractor

    ext = build_extractor("digits-classifier")
    x = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)
    out = ext(x)
    direct = dc.load_classifier()(x)
    assert torch.equal(out["features"], direct["features"]) and torch.equal(out["logits"], direct["logits"])
    assert ext.feature_dims == {"features": 128, "logits": 10} and ext.weights_official


def test_channels_last_option_agrees_closely(inception_weights):
    from sidbench.metrics.extractors.inception import InceptionV3Compat

    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    exact = InceptionV3Compat(inception_weights)(x)
    fast_ext = InceptionV3Compat(inception_weights, channels_last=True)
    fast = fast_ext(x)
    assert fast_ext.describe()["channels_last"] is True
    for key in ("pool", "logits"):
        torch.testing.assert_close(fast[key], exact[key], rtol=1e-4, atol=1e-5)


def test_weights_of_another_network_are_refused(tmp_path):
    from sidbench.metrics.extractors.inception import InceptionV3Compat

    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="does not fit"):
        InceptionV3Compat(tmp_path / "other.pth")


@pytest.mark.slow
def test_vgg16_features_match_torch_fidelity_module(tmp_path):
    """The P/R extractor runs torch-fidelity's VGG-16 wrapper on the verified file (~530 MB, slow)."""
    from _random_weights import save_random_vgg16
    from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

    from sidbench.metrics.extractors.vgg16 import VGG16

    weights = save_random_vgg16(tmp_path / "vgg16.pth")
    ext = VGG16(weights)
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    (ref,) = FeatureExtractorVGG16("vgg16", ["fc2_relu"], feature_extractor_weights_path=str(weights))(x)
    out = ext(x)["fc2_relu"]
    assert out.shape == (2, 4096) and torch.equal(out, ref) and out.abs().sum() > 0
    assert ext.name == "vgg16-fc2-relu" and not ext.weights_official
