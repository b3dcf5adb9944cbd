"""The layer order holds at run time too: the metrics layer finds the shipped digits classifier without
loading the suites (the import graph itself is checked by `lint-imports`, see pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sidbench.errors import AssetError, ConfigError
from sidbench.packaged import PACKAGED_ROOT, packaged_path


def test_digits_extractor_loads_without_importing_the_suites():
    code = ("import sys, torch\n"
            "from sidbench.metrics.extractors import build_extractor\n"
            "ext = build_extractor('digits-classifier')\n"
            "out = ext(torch.zeros(2, 1, 16, 16, dtype=torch.uint8))\n"
            "assert out['features'].shape == (2, 128), out['features'].shape\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('sidbench.suites'))\n"
            "assert not loaded, loaded\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_suites_reexport_the_same_classifier():
    from sidbench.metrics.extractors import digits_classifier as low
    from sidbench.suites import digits_classifier as high

    assert high.DigitsClassifier is low.DigitsClassifier and high.load_classifier is low.load_classifier
    shipped = PACKAGED_ROOT / "digits" / "classifier.safetensors"
    assert high.CLASSIFIER_WEIGHTS == low.CLASSIFIER_WEIGHTS == shipped


def test_packaged_files_are_found():
    assert packaged_path("digits/teacher").is_dir()
    assert packaged_path("digits/ref-stats.npz").is_file()
    assert packaged_path("digits/none", must_exist=False) == PACKAGED_ROOT / "digits" / "none"


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../pyproject.toml", "digits/../../x"])
def test_packaged_names_cannot_leave_the_folder(bad):
    with pytest.raises(ConfigError, match="relative path inside the package"):
        packaged_path(bad)


def test_missing_packaged_file_says_to_reinstall():
    with pytest.raises(AssetError, match="reinstall sidbench"):
        packaged_path("digits/not-shipped.npz")
