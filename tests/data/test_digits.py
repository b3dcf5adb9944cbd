"""scikit-learn digits as an ImageDataset: shape, range, labels, transform, determinism, split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from sidbench.data.digits import DigitsDataset, digits_arrays, digits_split
from sidbench.errors import DatasetError


def test_shape_range_labels():
    ds = DigitsDataset()
    assert (len(ds), ds.resolution, ds.channels, ds.label_dim) == (1797, 16, 1, 10)
    images, labels = ds.arrays()
    assert images.shape == (1797, 1, 16, 16) and images.dtype == np.uint8
    assert images.min() == 0 and images.max() == 255
    np.testing.assert_array_equal(labels, load_digits().target)
    assert ds.labels.tolist() == load_digits().target.tolist()
    image, label = ds[123]
    assert image.shape == (1, 16, 16) and label == load_digits().target[123]


def test_native_resolution_is_the_exact_scaling():
    images, _ = digits_arrays(8)
    expected = np.rint(load_digits().images * 255 / 16).astype(np.uint8)
    np.testing.assert_array_equal(images[:, 0], expected)


def test_upsampling_is_bilinear():
    """PIL's bilinear upsampling agrees with torch's half-pixel bilinear (align_corners=False) to 1 LSB."""
    small = torch.from_numpy(digits_arrays(8)[0].astype(np.float64))
    ref = F.interpolate(small, size=(16, 16), mode="bilinear", align_corners=False)
    got = torch.from_numpy(digits_arrays(16)[0].astype(np.float64))
    assert (got - ref).abs().max() <= 1.0


def test_deterministic_identity():
    a, b = DigitsDataset(16), DigitsDataset(16)
    assert a.identity_sha256() == b.identity_sha256()
    assert a.identity_sha256() != DigitsDataset(8).identity_sha256()
    assert a.identity_sha256() == DigitsDataset(16, use_labels=False).identity_sha256()
    digits_arrays.cache_clear()
    assert DigitsDataset(16).identity_sha256() == a.identity_sha256()


def test_arrays_are_read_only_and_items_are_copies():
    ds = DigitsDataset(8)
    with pytest.raises(ValueError):
        ds.arrays()[0][0, 0, 0, 0] = 1
    image, _ = ds[0]
    image[:] = 7
    assert not (ds[0][0] == 7).all()


def test_xflip_and_unlabeled():
    ds = DigitsDataset(8, xflip=True)
    assert len(ds) == 2 * 1797
    np.testing.assert_array_equal(ds[1797 + 5][0], ds[5][0][:, :, ::-1])
    plain = DigitsDataset(8, use_labels=False)
    assert plain.label_dim == 0 and plain.labels is None and plain[3][1] == 0


def test_split_is_stratified_disjoint_and_seeded():
    train, held = digits_split()
    assert np.intersect1d(train, held).size == 0
    assert np.union1d(train, held).tolist() == list(range(1797))
    target = load_digits().target
    for c in range(10):
        n_c = (target == c).sum()
        assert (target[held] == c).sum() == round(n_c * 0.2)
    t2, h2 = digits_split()
    assert h2.tolist() == held.tolist()
    assert digits_split(seed=1)[1].tolist() != held.tolist()
    ds = DigitsDataset(8, split="held_out")
    assert len(ds) == held.size and ds.name == "digits-8-held_out"
    np.testing.assert_array_equal(ds[0][0], digits_arrays(8)[0][held[0]])
    assert ds.labels.tolist() == target[held].tolist()


def test_bad_arguments():
    with pytest.raises(DatasetError):
        DigitsDataset(2)
    with pytest.raises(DatasetError):
        DigitsDataset(16, split="val")
    with pytest.raises(DatasetError):
        digits_split(held_out_fraction=1.5)
