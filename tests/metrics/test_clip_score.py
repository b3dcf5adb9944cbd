"""CLIP score: mean cosine of paired embeddings, as a fraction, scale recorded."""

import numpy as np
import pytest
import torch

from sidbench.errors import ConfigError
from sidbench.metrics import clip_score


def test_matches_direct_cosine():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(50, 32, generator=g) * 4, torch.randn(50, 32, generator=g) + 0.2
    expected = torch.nn.functional.cosine_similarity(img.double(), txt.double(), dim=1).mean().item()
    out = clip_score(img, txt)
    assert out.value == pytest.approx(expected, rel=1e-12)
    assert out.scale == 1.0 and out.clamp is False and out.num_pairs == 50


def test_scale_invariant_to_norms_and_no_clamp_by_default():
    rng = np.random.default_rng(1)
    img = rng.standard_normal((20, 8))
    assert clip_score(img, img * 3.0).value == pytest.approx(1.0)
    assert clip_score(img, -img).value == pytest.approx(-1.0)  # GigaGAN's mean cosine: no clamp


def test_torchmetrics_convention_is_explicit():
    rng = np.random.default_rng(2)
    img, txt = rng.standard_normal((30, 8)), rng.standard_normal((30, 8))
    cos = (img * txt).sum(1) / np.linalg.norm(img, axis=1) / np.linalg.norm(txt, axis=1)
    tm = clip_score(img, txt, scale=100.0, clamp=True)
    assert tm.value == pytest.approx(100 * np.maximum(cos, 0).mean(), rel=1e-12)
    assert tm.as_dict()["scale"] == 100.0


def test_pairing_errors():
    with pytest.raises(ConfigError, match="paired"):
        clip_score(np.ones((3, 4)), np.ones((2, 4)))
    with pytest.raises(ConfigError, match="zero norm"):
        clip_score(np.zeros((2, 4)), np.ones((2, 4)))
