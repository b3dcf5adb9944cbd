"""COCO captions (pinned sha256 flag) and the val2014 image listing."""

from __future__ import annotations

import warnings

import pytest

from sidbench.data import coco
from sidbench.data.coco import list_val2014_images, read_captions
from sidbench.errors import DatasetError
from sidbench.fileio import sha256_bytes


def test_lines_are_kept_verbatim(tmp_path):
    path = tmp_path / "captions.txt"
    raw = "A cat on a mat.\n  two spaces lead\r\nlast one at the café".encode()
    path.write_bytes(raw)
    with pytest.warns(UserWarning, match="not the pinned"):
        caps = read_captions(path)
    assert caps == ["A cat on a mat.", "  two spaces lead", "last one at the café"]
    assert caps.sha256 == sha256_bytes(raw) and caps.pinned is False
    assert caps.describe()["count"] == 3


def test_trailing_newline_adds_no_caption_and_no_warning_when_not_expected(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a\nb\n\nc\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        caps = read_captions(path, expect_pinned=False)
    assert caps == ["a", "b", "", "c"]


@pytest.mark.parametrize("sep", ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"],
                         ids=["CR", "VT", "FF", "FS", "GS", "RS", "NEL", "LS", "PS"])
def test_only_newline_ends_a_caption(tmp_path, sep):
    """str.splitlines() would also split on these; a caption containing one stays one caption."""
    path = tmp_path / "c.txt"
    path.write_bytes(f"a{sep}b\nsecond{sep}\nthird".encode())
    caps = read_captions(path, expect_pinned=False)
    assert caps == [f"a{sep}b", "second" if sep == "\r" else f"second{sep}", "third"]
    assert len(caps) == 3


def test_pinned_file_is_recognised(tmp_path, monkeypatch):
    raw = b"first caption\nsecond caption\n"
    asset = coco.ASSETS["coco-captions"]
    monkeypatch.setitem(coco.ASSETS, "coco-captions", type(asset)(
        asset.name, asset.filename, asset.url, asset.description, sha256=sha256_bytes(raw)))
    (tmp_path / "captions.txt").write_bytes(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        caps = read_captions(tmp_path / "captions.txt")
    assert caps.pinned and caps == ["first caption", "second caption"]


def test_pinned_digest_is_the_published_one():
    published = "edabd2a556026cbf5d36a5fffa35ad43d7ba71b72f6d640b727c1edefb7f1945"
    assert coco.ASSETS["coco-captions"].sha256 == published


def test_bad_caption_files(tmp_path):
    with pytest.raises(DatasetError, match="cannot read"):
        read_captions(tmp_path / "missing.txt")
    (tmp_path / "e.txt").write_bytes(b"")
    with pytest.raises(DatasetError, match="no captions"):
        read_captions(tmp_path / "e.txt", expect_pinned=False)
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe bad")
    with pytest.raises(DatasetError, match="UTF-8"):
        read_captions(tmp_path / "b.txt")


def test_val2014_listing(tmp_path):
    root = tmp_path / "val2014"
    (root / "sub").mkdir(parents=True)
    for name in ["COCO_val2014_000000000042.jpg", "COCO_val2014_000000000007.jpg", "sub/x.PNG"]:
        (root / name).write_bytes(b"x")
    (root / "readme.txt").write_text("no")
    (root / ".DS_Store.jpg").write_bytes(b"x")
    files = list_val2014_images(root, expect_count=None)
    assert [f.relative_to(root).as_posix() for f in files] == [
        "COCO_val2014_000000000007.jpg", "COCO_val2014_000000000042.jpg", "sub/x.PNG"]
    (root / "anim.gif").write_bytes(b"x")  # not an accepted image extension anywhere
    assert len(list_val2014_images(root, expect_count=None)) == 3
    with pytest.raises(DatasetError, match="3 images, COCO val2014 has 40,504"):
        list_val2014_images(root)
    with pytest.raises(DatasetError, match="not a folder"):
        list_val2014_images(root / "nope")
