"""Our pipeline vs torch-fidelity 0.4.0's own `calculate_metrics` on the same PNGs and weights file.

Both run torch-fidelity's Inception module with the same random (He-scaled) weights,
so features are equal and any difference comes from the statistics and metric code:
FID, KID and IS must agree to 1e-4 relative.

IS split order: torch-fidelity shuffles the logits with RandomState(2020) before its
10 splits; our default protocol (SiD's, `is-10split`) splits in index order. The
test aligns the two by evaluating our `is-fidelity` protocol (same shuffle), and
checks separately that our default differs from torch-fidelity's number exactly
by that permutation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _random_weights import save_random_inception  # noqa: E402

pytestmark = pytest.mark.slow

N1, N2 = 48, 40  # two image sets; unequal sizes catch swapped inputs
KID_SUBSET, KID_SUBSETS = 20, 10


def _smooth_images(n: int, seed: int, tint: tuple[int, int, int]) -> np.ndarray:
    """Random low-frequency colour images (uint8 NCHW, 32x32): varied but not white noise."""
    rng = np.random.RandomState(seed)
    low = rng.rand(n, 3, 4, 4) * 200
    img = torch.nn.functional.interpolate(torch.from_numpy(low), size=(32, 32), mode="bicubic",
                                          align_corners=False).numpy()
    img += rng.rand(n, 3, 32, 32) * 30 + np.asarray(tint).reshape(1, 3, 1, 1)
    return img.clip(0, 255).astype(np.uint8)


def _write_pngs(folder, images: np.ndarray) -> None:
    from PIL import Image

    folder.mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im.transpose(1, 2, 0)).save(folder / f"{i:06d}.png")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fidelity")
    weights = save_random_inception(tmp / "random-inception.pth", seed=3)
    a, b = tmp / "a", tmp / "b"
    _write_pngs(a, _smooth_images(N1, 0, (0, 0, 0)))
    _write_pngs(b, _smooth_images(N2, 1, (40, 0, 20)))
    return weights, a, b


@pytest.fixture(scope="module")
def theirs(setup):
    import torch_fidelity

    weights, a, b = setup
    return torch_fidelity.calculate_metrics(
        input1=str(a), input2=str(b), cuda=False, isc=True, fid=True, kid=True,
        kid_subset_size=KID_SUBSET, kid_subsets=KID_SUBSETS, feature_extractor_weights_path=str(weights),
        cache=False, verbose=False, save_cpu_ram=True, batch_size=32,
    )


@pytest.fixture(scope="module")
def ours(setup):
    from sidbench.metrics.evaluate import evaluate

    weights, a, b = setup
    return evaluate(a, ref=b, metrics="fid,is,kid", protocols=["is-fidelity"],
                    weights={"inception-v3-compat": weights},
                    options={"kid": {"subset_size": KID_SUBSET, "num_subsets": KID_SUBSETS}},
                    batch_size=25)


def test_fid_matches_torch_fidelity(ours, theirs):
    fid = ours["metrics"]["fid"]["value"]
    assert fid > 1.0  # the sets differ: a collapsed extractor would give ~0
    assert fid == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)


def test_kid_matches_torch_fidelity(ours, theirs):
    kid = ours["metrics"]["kid"]
    assert kid["value"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4)
    assert kid["std"] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-4)


def test_is_matches_torch_fidelity_with_its_split_order(ours, theirs):
    isc = ours["metrics"]["is"]
    assert isc["protocol"]["name"] == "is-fidelity"
    assert isc["value"] == pytest.approx(theirs["inception_score_mean"], rel=1e-4)
    assert isc["std"] == pytest.approx(theirs["inception_score_std"], rel=1e-4)


def test_default_is_protocol_differs_only_by_the_shuffle():
    """SiD's convention (index order) vs torch-fidelity's shuffled splits, on the same logits."""
    from torch_fidelity.metric_isc import isc_features_to_metric

    from sidbench.metrics.inception_score import inception_score

    logits = torch.randn(200, 1008, generator=torch.Generator().manual_seed(0)) * 3
    tf = isc_features_to_metric(logits, splits=10, shuffle=True, rng_seed=2020)
    perm = np.random.RandomState(2020).permutation(len(logits))
    assert inception_score(logits[perm], splits=10, mode="sid").mean == pytest.approx(
        tf["inception_score_mean"], rel=1e-9)
    assert inception_score(logits, splits=10, mode="fidelity").mean == pytest.approx(
        tf["inception_score_mean"], rel=1e-9)
    in_order = inception_score(logits, splits=10, mode="sid").mean
    assert in_order != pytest.approx(tf["inception_score_mean"], rel=1e-6)
