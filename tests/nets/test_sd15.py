"""Stable Diffusion 1.5 loading: the two user errors (no extra installed, wrong folder)."""

from __future__ import annotations

import sys

import pytest

from sidbench.errors import AssetError, ConfigError
from sidbench.nets.sd15 import EXPECTED, load_sd15


def _skeleton(root):
    """A folder with the diffusers layout but no weights."""
    root.mkdir()
    (root / "model_index.json").write_text("{}")
    for name in EXPECTED:
        if name.endswith("/"):
            (root / name).mkdir()
    return root


def test_missing_extra_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # makes `import diffusers` raise ImportError
    with pytest.raises(ConfigError) as info:
        load_sd15(_skeleton(tmp_path / "sd15"))
    assert 'pip install -e ".[t2i]"' in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_folder_lists_the_expected_layout(tmp_path):
    with pytest.raises(AssetError) as info:
        load_sd15(tmp_path / "nowhere")
    msg = str(info.value)
    assert "does not exist" in msg
    assert all(name in msg for name in EXPECTED)


def test_incomplete_folder_names_what_is_missing(tmp_path):
    root = _skeleton(tmp_path / "sd15")
    (root / "vae").rmdir()
    (root / "model_index.json").unlink()
    with pytest.raises(AssetError, match=r"missing model_index\.json, vae/"):
        load_sd15(root)


def test_folder_without_weights_is_an_asset_error(tmp_path):
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    with pytest.raises(AssetError, match="cannot load Stable Diffusion 1.5"):
        load_sd15(_skeleton(tmp_path / "sd15"))
