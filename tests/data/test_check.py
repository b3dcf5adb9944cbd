"""check_dataset (sidbench.suites.dataset_check): a wrong dataset is refused with every mismatch named."""

from __future__ import annotations

import numpy as np
import pytest

from sidbench.data import ImageDataset
from sidbench.data.digits import DigitsDataset
from sidbench.errors import DatasetError
from sidbench.suites.base import DatasetIdentity
from sidbench.suites.dataset_check import check_dataset


class _Lazy(ImageDataset):
    """A dataset of any size without any pixels on disk (stands in for a big zip)."""

    def __init__(self, n: int, res: int = 64, channels: int = 3, labels: np.ndarray | None = None, **kw):
        super().__init__(name="ffhq-64x64", num_images=n, resolution=res, channels=channels,
                         raw_labels=labels, source="/data/ffhq-64x64.zip", **kw)

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        return np.zeros(self.image_shape, np.uint8)

    def _compute_identity(self) -> str:
        return "f" * 64


AFHQ = DatasetIdentity(name="afhqv2-64x64", filename="afhqv2-64x64.zip", num_images=15_803,
                       resolution=64, channels=3)


def test_ffhq_fed_to_the_afhq_suite_is_refused_with_a_diagnosis():
    with pytest.raises(DatasetError) as err:
        check_dataset(_Lazy(70_000), AFHQ)
    msg = str(err.value)
    assert "afhqv2-64x64.zip" in msg and "15,803" in msg and "70,000 images" in msg
    assert "looks like" in msg and ("FFHQ" in msg or "ffhq" in msg)


def test_matching_dataset_passes_and_xflip_or_max_size_do_not_change_the_count():
    check_dataset(_Lazy(15_803), AFHQ)
    check_dataset(_Lazy(15_803, xflip=True), AFHQ)
    check_dataset(_Lazy(15_803, max_size=100), AFHQ)


def test_every_mismatch_is_listed():
    labels = np.arange(20) % 4
    ident = DatasetIdentity(name="x", filename="x.zip", num_images=10, resolution=32, channels=1,
                            label_dim=10)
    with pytest.raises(DatasetError) as err:
        check_dataset(_Lazy(20, res=64, channels=3, labels=labels), ident)
    msg = str(err.value)
    for part in ["resolution 64 (expected 32)", "3 channel(s) (expected 1)", "label_dim 4 (expected 10)",
                 "20 images (expected 10)"]:
        assert part in msg
    assert err.value.hint and "x.zip" in err.value.hint


def test_missing_labels_are_explained():
    ident = DatasetIdentity(name="c", filename="c.zip", num_images=5, resolution=64, channels=3, label_dim=10)
    with pytest.raises(DatasetError, match="no labels \\(expected 10 classes"):
        check_dataset(_Lazy(5), ident)


def test_pinned_sha256_is_checked():
    ds = DigitsDataset(resolution=8)
    good = DatasetIdentity(name="digits", filename=None, num_images=1797, resolution=8, channels=1,
                           label_dim=10, sha256=ds.identity_sha256())
    check_dataset(ds, good)
    bad = DatasetIdentity(name="digits", filename=None, num_images=1797, resolution=8, channels=1,
                          label_dim=10, sha256="0" * 64)
    with pytest.raises(DatasetError) as err:
        check_dataset(ds, bad)
    assert f"sha256 {ds.identity_sha256()} (expected {'0' * 64})" in str(err.value)
    assert "different sha256" in err.value.hint


def test_dataset_readers_do_not_import_suites():
    """data sits below suites: no module of sidbench.data may import sidbench.suites (not even lazily)."""
    import ast
    from pathlib import Path

    import sidbench.data

    for path in Path(sidbench.data.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "sidbench.suites" or n.startswith("sidbench.suites.") for n in names), path
