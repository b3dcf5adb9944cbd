"""The one image decoder (mode policy, damaged files named) and the one folder/zip reader."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import PIL.Image
import pytest

from sidbench.errors import DatasetError
from sidbench.images import (
    IMAGE_EXTENSIONS,
    ImageFiles,
    decode_image,
    image_header,
    is_image_name,
    list_image_files,
    load_image_folder,
)
from tests.data._image_modes import MODES, image_set, make, write_dir, write_zip


@pytest.mark.parametrize("mode", list(MODES))
def test_mode_policy(mode):
    _, data, expected = make(mode, 0)
    got = decode_image(data, f"x.{mode}")
    assert got.dtype == np.uint8 and got.flags.c_contiguous and got.flags.writeable
    assert got.shape == (MODES[mode], 8, 8)
    np.testing.assert_array_equal(got, expected)
    assert image_header(data) == got.shape  # the header alone says the same


def test_the_sixteen_bit_fixture_is_really_sixteen_bit_and_the_palette_really_a_palette():
    for mode, pil_mode in [("16-bit", "I;16"), ("P", "P"), ("P-transparent", "P"), ("LA", "LA"),
                           ("CMYK", "CMYK"), ("JPEG-L", "L"), ("1", "1")]:
        with PIL.Image.open(io.BytesIO(make(mode, 0)[1])) as pil:
            assert pil.mode == pil_mode, mode


@pytest.mark.parametrize("mode", ["I", "F"])
def test_32_bit_pixels_are_refused_naming_the_file(mode):
    arr = np.arange(64, dtype=np.int32 if mode == "I" else np.float32).reshape(8, 8) * 1000
    buf = io.BytesIO()
    PIL.Image.fromarray(arr, mode).save(buf, format="TIFF")
    for read in (decode_image, image_header):
        with pytest.raises(DatasetError, match=r"deep\.tif: 32-bit .* no defined 8-bit range"):
            read(buf.getvalue(), "deep.tif")


def _damaged() -> dict[str, bytes]:
    png = make("RGB", 0, res=32)[1]
    jpg = make("JPEG", 0, res=32)[1]
    return {"empty": b"", "garbage": b"not an image at all", "png-header-only": png[:40],
            "truncated-png": png[: len(png) // 2], "truncated-jpeg": jpg[: len(jpg) // 2],
            "bad-crc": png[:-20] + bytes([png[-20] ^ 0xFF]) + png[-19:]}


@pytest.mark.parametrize("kind", list(_damaged()))
def test_damaged_files_are_named(kind):
    with pytest.raises(DatasetError, match=f"sub/{kind}.png: cannot decode image") as err:
        decode_image(_damaged()[kind], f"sub/{kind}.png")
    assert err.value.hint


def test_names_order_and_what_counts_as_an_image():
    assert all(is_image_name(f"a/b{ext}") and is_image_name(f"b{ext.upper()}") for ext in IMAGE_EXTENSIONS)
    for name in ["a.gif", "a.txt", "dataset.json", "a.npy", "a.png.bak", "a.pdf", ".a.png", ".hidden/a.png",
                 "__MACOSX/a.png", "x/__MACOSX/a.png", "a/.b/c.png", "png"]:
        assert not is_image_name(name), name


@pytest.mark.parametrize("kind", ["dir", "zip"])
def test_reader_sorts_by_relative_posix_name_and_skips_non_images(tmp_path, kind):
    rgb = make("RGB", 0)[1]
    files = {name: rgb for name in ["b.png", "a/b.png", "a-c.png", "A.PNG", "a/z/y.jpg", "c.tif"]}
    files.update({"notes.txt": b"x", "dataset.json": b"{}", "d.gif": b"GIF89a", ".e.png": b"junk",
                  "__MACOSX/a/._b.png": b"junk", ".git/x.png": b"junk"})
    path = write_dir(tmp_path / "d", files) if kind == "dir" else write_zip(tmp_path / "d.zip", files)
    expected = ["A.PNG", "a-c.png", "a/b.png", "a/z/y.jpg", "b.png", "c.tif"]  # str order: "-" < "/"
    with ImageFiles(path) as reader:
        assert reader.names == expected and len(reader) == 6 and reader.kind == kind
        assert reader.has("dataset.json") and reader.read("dataset.json") == b"{}"
        assert reader.load(0).shape == (3, 8, 8)
    assert list_image_files(path) == expected


def test_zip_directory_entries_are_not_images_and_duplicates_are_refused(tmp_path):
    rgb = make("RGB", 0)[1]
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("imgs/", b"")
        zf.writestr("imgs/a.png", rgb)
    assert list_image_files(path) == ["imgs/a.png"]
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as zf:
        zf.writestr("imgs/a.png", rgb)
    with pytest.raises(DatasetError, match="two entries named imgs/a.png"):
        ImageFiles(path)


def test_bad_paths_and_unreadable_files(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        ImageFiles(tmp_path / "missing")
    (tmp_path / "x.bin").write_bytes(b"\0" * 10)
    with pytest.raises(DatasetError, match="neither a folder nor a zip"):
        ImageFiles(tmp_path / "x.bin")
    (tmp_path / "d").mkdir()
    os.symlink(tmp_path / "gone.png", tmp_path / "d" / "dangling.png")
    reader = ImageFiles(tmp_path / "d")
    assert reader.names == ["dangling.png"]
    with pytest.raises(DatasetError, match="d/dangling.png: cannot read"):
        reader.load(0)


def test_a_damaged_member_of_a_zip_is_named_with_the_archive(tmp_path):
    files = {"a.png": make("RGB", 0)[1], "b.png": _damaged()["truncated-png"]}
    path = write_zip(tmp_path / "set.zip", files)
    reader = ImageFiles(path)
    reader.load(0)
    with pytest.raises(DatasetError, match=r"set\.zip:b\.png: cannot decode image"):
        reader.load(1)


def test_reader_pickles_without_its_open_zip(tmp_path):
    import pickle

    files, expected = image_set("RGB", 3)
    reader = ImageFiles(write_zip(tmp_path / "s.zip", files))
    reader.load(0)  # opens the zip
    clone = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(clone.load(2), expected[2])


def test_load_image_folder(tmp_path):
    files, expected = image_set("RGBA", 6)
    root = write_dir(tmp_path / "d", files)
    np.testing.assert_array_equal(load_image_folder(root), expected)
    np.testing.assert_array_equal(load_image_folder(root, limit=2), expected[:2])
    (root / "zz.png").write_bytes(make("L", 0)[1])
    with pytest.raises(DatasetError, match="zz.png has shape"):
        load_image_folder(root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        load_image_folder(tmp_path / "empty")
