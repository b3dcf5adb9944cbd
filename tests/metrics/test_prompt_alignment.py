"""digits-t2i prompt alignment: the digits classifier's probability of each caption's digit (not CLIP score).

Oracle: the shipped classifier run directly on the images, torch softmax, the prompted class picked.
"""

import hashlib
import json

import numpy as np
import pytest
import torch

from sidbench.data.captions import digit_caption, digit_captions
from sidbench.data.digits import DigitsDataset
from sidbench.errors import ConfigError, DatasetError
from sidbench.metrics.builtin.prompt_alignment import PROMPT_ALIGNMENT, prompt_alignment
from sidbench.metrics.evaluate import evaluate
from sidbench.metrics.extractors.base import FeatureExtractor
from sidbench.metrics.extractors.digits_classifier import CLASSIFIER_JSON, load_classifier
from sidbench.metrics.protocols import DIGITS_T2I_CAPTIONS_SHA256, get_protocol

PROTOCOL = "digits-t2i-alignment"


def _oracle(images: torch.Tensor, digits) -> tuple[float, float]:
    with torch.no_grad():
        logits = load_classifier()(images)["logits"].double()
    p = torch.softmax(logits, dim=1)
    d = torch.as_tensor(np.asarray(digits))
    return p[torch.arange(len(d)), d].mean().item(), (logits.argmax(dim=1) == d).double().mean().item()


def _run(images, captions, **kw):
    return evaluate(images, metrics=["prompt_alignment"], protocols=[PROTOCOL], captions=captions,
                    batch_size=500, **kw)["metrics"]["prompt_alignment"]


@pytest.fixture(scope="module")
def protocol_images():
    """2,000 real digits, image i of class i % 10, so digit_captions(2000)[i] is its true caption."""
    images, labels = DigitsDataset(resolution=16).arrays()
    by_class = [np.flatnonzero(labels == c) for c in range(10)]
    idx = np.array([by_class[i % 10][(i // 10) % len(by_class[i % 10])] for i in range(2000)])
    assert (labels[idx] == np.arange(2000) % 10).all()
    return torch.from_numpy(images[idx].copy())


def test_protocol_pins_the_digit_caption_list():
    p = get_protocol(PROTOCOL)
    assert (p.metric, p.extractor, p.feature_key, p.num_images) == ("prompt_alignment", "digits-classifier",
                                                                    "logits", 2000)
    assert not p.lower_is_better and p.option("seed_sets") == ((0, 1999),)
    # sha256 of captions.txt written one caption per line (conformance.captions_sha256's convention)
    text = "".join(c + "\n" for c in digit_captions(2000)).encode()
    assert p.option("captions_sha256") == DIGITS_T2I_CAPTIONS_SHA256 == hashlib.sha256(text).hexdigest()
    assert PROMPT_ALIGNMENT.default_protocol == PROTOCOL and PROMPT_ALIGNMENT.reference == "none"
    assert "not CLIP score" in PROMPT_ALIGNMENT.description and "not CLIP score" in p.description


def test_true_captions_full_protocol_equals_the_oracle(protocol_images):
    captions = digit_captions(2000)
    entry = _run(protocol_images, captions)
    value, acc = _oracle(protocol_images, np.arange(2000) % 10)
    assert entry["value"] == pytest.approx(value, rel=1e-6) and entry["accuracy"] == pytest.approx(acc)
    assert entry["value"] > 0.9 and entry["accuracy"] > 0.95
    assert entry["full_protocol"] and entry["protocol_deviations"] == []
    assert entry["protocol"] == {"name": PROTOCOL, "version": "1.0.0"}
    assert entry["captions_sha256"] == DIGITS_T2I_CAPTIONS_SHA256 and entry["lower_is_better"] is False


def test_shuffled_captions_score_low(protocol_images):
    captions = digit_captions(2000)
    perm = np.random.default_rng(0).permutation(2000)
    shuffled = [captions[i] for i in perm]
    entry = _run(protocol_images, shuffled)
    value, acc = _oracle(protocol_images, perm % 10)
    assert entry["value"] == pytest.approx(value, rel=1e-6) and entry["accuracy"] == pytest.approx(acc)
    assert entry["value"] < 0.2 and entry["accuracy"] < 0.2  # ~0.1: the prompts no longer match
    assert not entry["full_protocol"]
    assert any("captions sha256" in d for d in entry["protocol_deviations"])
    # every caption names the next digit: a confident classifier gives it ~0
    off_by_one = [digit_caption((i + 1) % 10, 1) for i in range(2000)]
    assert _run(protocol_images, off_by_one)["value"] < 0.05


def test_held_out_accuracy_is_the_classifiers():
    """On the classifier's held-out split with true captions, accuracy is its recorded held-out accuracy."""
    images, labels = DigitsDataset(resolution=16, split="held_out").arrays()
    images = torch.from_numpy(images.copy())
    captions = [digit_caption(int(d), i % 3) for i, d in enumerate(labels)]
    entry = _run(images, captions)
    value, acc = _oracle(images, labels)
    assert entry["value"] == pytest.approx(value, rel=1e-6) and entry["accuracy"] == pytest.approx(acc)
    recorded = json.loads(CLASSIFIER_JSON.read_text())["training"]["heldout_accuracy"]
    assert entry["accuracy"] == pytest.approx(recorded, abs=0.5 / len(labels))
    assert "359 images, the protocol uses 2000" in entry["protocol_deviations"]


class _UniformExtractor(FeatureExtractor):
    """A 'classifier' that cannot tell digits apart: every logit equal."""

    name, version, weights_sha256, input_size, input_channels = "digits-classifier", "1", "0" * 64, 16, 1
    feature_dims = {"features": 4, "logits": 10}

    def _extract(self, images):
        n = len(images)
        return {"features": torch.zeros(n, 4), "logits": torch.full((n, 10), 3.25)}


def test_uniform_logits_give_one_tenth():
    images = torch.zeros(30, 1, 16, 16, dtype=torch.uint8)
    entry = _run(images, digit_captions(30), extractors={"digits-classifier": _UniformExtractor()})
    assert entry["value"] == pytest.approx(0.1, rel=1e-12)
    assert entry["accuracy"] == 0.0  # a ten-way tie is no hit


def test_formula_on_known_logits():
    logits = np.array([[0.0, np.log(3.0)] + [-np.inf] * 8, [5.0] + [0.0] * 9])
    res = prompt_alignment(np.nan_to_num(logits, neginf=-1e4), [1, 3])
    # row 0: p(1) = 3/4, argmax 1 (hit); row 1: p(3) = 1 / (e^5 + 9), argmax 0 (miss)
    assert res.value == pytest.approx((0.75 + 1 / (np.exp(5.0) + 9)) / 2, rel=1e-12)
    assert res.accuracy == 0.5 and res.num_images == 2


@pytest.mark.parametrize(("captions", "error", "message"), [
    (None, ConfigError, "prompt alignment needs the captions"),
    (digit_captions(5), ConfigError, "6 images but only 5 captions"),
    ([*digit_captions(5), "a photo of a cat"], DatasetError,
     r"caption 5 \('a photo of a cat'\) names no digit"),
])
def test_bad_captions_are_one_line_errors(captions, error, message):
    images = torch.zeros(6, 1, 16, 16, dtype=torch.uint8)
    with pytest.raises(error, match=message) as info:
        _run(images, captions, extractors={"digits-classifier": _UniformExtractor()})
    assert "\n" not in str(info.value) and info.value.hint


def test_wrong_logit_width_is_refused():
    with pytest.raises(ConfigError, match=r"needs \[N, 10\] digit logits"):
        prompt_alignment(np.zeros((4, 1008)), [0, 1, 2, 3])
