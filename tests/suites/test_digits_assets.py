"""The digits suite's shipped files: present, small, hash-checked, loadable, sensible and reproducible."""

import json
import shutil

import numpy as np
import pytest
import torch

from sidbench.errors import AssetError
from sidbench.fileio import sha256_file
from sidbench.suites.digits import REF_STATS, TEACHER_DIR
from sidbench.suites.digits_classifier import (
    CLASSIFIER_JSON,
    CLASSIFIER_WEIGHTS,
    DigitsClassifier,
    classifier_sha256,
    load_classifier,
    train_classifier,
)

MAX_BYTES = 10 * 1024 * 1024


@pytest.mark.parametrize("weights,meta", [
    (CLASSIFIER_WEIGHTS, CLASSIFIER_JSON),
    (TEACHER_DIR / "network.safetensors", TEACHER_DIR / "network.json"),
])
def test_shipped_weights_exist_match_their_hash_and_are_small(weights, meta):
    assert weights.is_file() and meta.is_file()
    assert weights.stat().st_size < MAX_BYTES
    assert json.loads(meta.read_text())["weights_sha256"] == sha256_file(weights)


def test_shipped_teacher_is_class_conditional_and_finite():
    from sidbench.nets.native import load_network

    net = load_network(TEACHER_DIR)
    assert (net.img_resolution, net.img_channels, net.label_dim) == (16, 1, 10)
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.1, 0.5, 2.0, 20.0])
    with torch.no_grad():
        d3 = net(x, sigma, torch.eye(10)[[3, 3, 3, 3]])
        d8 = net(x, sigma, torch.eye(10)[[8, 8, 8, 8]])
    assert d3.shape == x.shape and torch.isfinite(d3).all()
    assert (d3 - d8).abs().max() > 1e-3  # the label changes the output


def test_shipped_teacher_training_record():
    record = json.loads((TEACHER_DIR / "training.json").read_text())
    assert record["suite"] == "digits" and record["kimg"] > 0
    assert record["config"]["network"]["init_kwargs"]["label_dim"] == 10


def test_classifier_shapes_and_input_checks():
    model = DigitsClassifier().eval()
    out = model(torch.zeros(5, 1, 16, 16, dtype=torch.uint8))
    assert out["features"].shape == (5, 128) and out["logits"].shape == (5, 10)
    with pytest.raises(TypeError, match="uint8"):
        model(torch.zeros(5, 1, 16, 16))
    with pytest.raises(ValueError, match="16, 16"):
        model(torch.zeros(5, 3, 16, 16, dtype=torch.uint8))


def test_shipped_classifier_is_accurate_on_held_out_digits():
    from sidbench.data.digits import DigitsDataset

    images, labels = DigitsDataset(resolution=16, split="held_out").arrays()
    model = load_classifier()
    with torch.no_grad():
        pred = model(torch.from_numpy(np.array(images)))["logits"].argmax(1).numpy()
    assert (pred == labels).mean() >= 0.97
    assert json.loads(CLASSIFIER_JSON.read_text())["training"]["heldout_accuracy"] >= 0.97


def test_tampered_classifier_is_refused(tmp_path):
    shutil.copy(CLASSIFIER_JSON, tmp_path / CLASSIFIER_JSON.name)
    data = bytearray(CLASSIFIER_WEIGHTS.read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / CLASSIFIER_WEIGHTS.name).write_bytes(bytes(data))
    with pytest.raises(AssetError, match="sha256"):
        load_classifier(tmp_path / CLASSIFIER_WEIGHTS.name)
    with pytest.raises(AssetError, match="not found"):
        load_classifier(tmp_path / "missing.safetensors")


def test_classifier_training_is_deterministic():
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, size=(80, 1, 16, 16)).astype(np.uint8)
    labels = rng.randint(0, 10, size=80)
    a, _ = train_classifier((images, labels), (images[:10], labels[:10]), epochs=1, seed=1)
    b, _ = train_classifier((images, labels), (images[:10], labels[:10]), epochs=1, seed=1)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_reference_stats_match_the_shipped_classifier():
    from sidbench.metrics.reference import load_reference

    ref = load_reference(REF_STATS)
    assert ref.mu.shape == (128,) and ref.sigma.shape == (128, 128) and ref.num_images == 1797
    assert ref.meta["extractor_sha256"] == classifier_sha256()
    np.testing.assert_allclose(ref.sigma, ref.sigma.T)


# The shipped statistics were computed on one machine; float32 CNN features move in their last bits
# with the CPU's kernels and the batch size (measured: max |d mu| 2.6e-7, max |d sigma| 5.3e-6 between
# batch sizes 1 and 256, against max |mu| 11 and max |sigma| 91). 1e-5 of the largest entry (about
# 100 float32 ulps) is 170x above that noise and 55x below the smallest real mistake checked below
# (a biased covariance; dropping one of the 1,797 images is 60-80x).
REF_TOLERANCE = 1e-5


def _close_to_shipped(mu, sigma, ref) -> bool:
    return bool(np.abs(mu - ref.mu).max() <= REF_TOLERANCE * np.abs(ref.mu).max()
                and np.abs(sigma - ref.sigma).max() <= REF_TOLERANCE * np.abs(ref.sigma).max())


def test_reference_stats_are_recomputed_from_the_1797_digits():
    """The shipped ref-stats.npz is what the digits-fd protocol's extractor gives on the whole dataset."""
    from sidbench.data.digits import DigitsDataset
    from sidbench.metrics.extractors import build_extractor
    from sidbench.metrics.protocols import get_protocol
    from sidbench.metrics.reference import load_reference
    from sidbench.metrics.stats import FeatureStats

    protocol = get_protocol("digits-fd")
    dataset = DigitsDataset(resolution=16, use_labels=False)
    extractor = build_extractor(protocol.extractor)
    stats, dropped_one = FeatureStats(), FeatureStats()
    for start in range(0, len(dataset), 500):  # not the batch size the file was made with
        indices = range(start, min(start + 500, len(dataset)))
        images = torch.from_numpy(np.stack([dataset[i][0] for i in indices]))
        features = extractor(images)[protocol.feature_key]
        stats.update(features, indices=list(indices))
        dropped_one.update(features[1:] if start == 0 else features)

    ref = load_reference(REF_STATS)
    assert stats.num == ref.num_images == len(dataset) == 1797
    assert ref.meta["dataset_sha256"] == dataset.identity_sha256()
    assert (ref.meta["extractor"], ref.meta["feature_key"]) == (protocol.extractor, protocol.feature_key)
    assert ref.meta["extractor_sha256"] == extractor.weights_sha256
    assert _close_to_shipped(stats.mean(), stats.cov(unbiased=True), ref)
    # the comparison is tight enough to see the mistakes a rebuild could make
    assert not _close_to_shipped(stats.mean(), stats.cov(unbiased=False), ref)
    assert not _close_to_shipped(dropped_one.mean(), dropped_one.cov(unbiased=True), ref)
