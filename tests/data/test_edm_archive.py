"""EDM dataset_tool zips and folders, plain image folders: order, labels, xflip, max_size, errors."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from sidbench.data import open_dataset, subset_indices
from sidbench.errors import DatasetError
from sidbench.fileio import sha256_file


def _img(i: int, res: int = 8, channels: int = 3) -> np.ndarray:
    """A distinct, asymmetric HWC image for index i (so a flip is visible)."""
    rng = np.random.RandomState(100 + i)
    arr = rng.randint(0, 256, size=(res, res, channels)).astype(np.uint8)
    return arr[:, :, 0] if channels == 1 else arr


def _png(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    PIL.Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _files(n: int, labels: list[int] | None | str = "none", res: int = 8,
           channels: int = 3) -> dict[str, bytes]:
    """EDM layout: 00000/img00000000.png ..., plus dataset.json when labels is a list or None."""
    files = {f"{i // 3:05d}/img{i:08d}.png": _png(_img(i, res, channels)) for i in range(n)}
    if labels != "none":
        names = sorted(files)
        pairs = None if labels is None else [[name, lab] for name, lab in zip(names, labels, strict=True)]
        files["dataset.json"] = json.dumps({"labels": pairs}).encode()
    return files


def _write(tmp_path: Path, files: dict[str, bytes], kind: str) -> Path:
    if kind == "zip":
        path = tmp_path / "toy-8x8.zip"
        tmp_path.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w") as zf:
            for name in reversed(sorted(files)):  # stored out of order on purpose
                zf.writestr(name, files[name])
        return path
    root = tmp_path / "toy-8x8"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.mark.parametrize("kind", ["zip", "dir"])
def test_reads_images_in_sorted_order_chw(tmp_path, kind):
    ds = open_dataset(_write(tmp_path, _files(7), kind))
    assert (len(ds), ds.resolution, ds.channels, ds.label_dim, ds.labels) == (7, 8, 3, 0, None)
    assert ds.name == "toy-8x8"
    for i in range(7):
        image, label = ds[i]
        assert image.dtype == np.uint8 and image.shape == (3, 8, 8) and label == 0
        np.testing.assert_array_equal(image, _img(i).transpose(2, 0, 1))


@pytest.mark.parametrize("kind", ["zip", "dir"])
def test_labels_from_dataset_json(tmp_path, kind):
    labels = [3, 1, 4, 1, 5, 9, 2]
    ds = open_dataset(_write(tmp_path, _files(7, labels), kind))
    assert ds.label_dim == 10  # EDM: max label + 1
    assert ds.labels.dtype == np.int64
    assert ds.labels.tolist() == labels
    assert [ds[i][1] for i in range(7)] == labels
    off = open_dataset(_write(tmp_path / "b", _files(7, labels), kind), use_labels=False)
    assert off.label_dim == 0 and off.labels is None and off[6][1] == 0


@pytest.mark.parametrize("kind", ["zip", "dir"])
def test_null_labels_mean_unlabeled(tmp_path, kind):
    ds = open_dataset(_write(tmp_path, _files(4, None), kind))
    assert ds.label_dim == 0 and ds.labels is None


def test_grayscale_has_one_channel(tmp_path):
    ds = open_dataset(_write(tmp_path, _files(3, channels=1), "zip"))
    assert ds.channels == 1 and ds[2][0].shape == (1, 8, 8)
    np.testing.assert_array_equal(ds[2][0][0], _img(2, channels=1))


def test_xflip_doubles_with_mirrored_second_half(tmp_path):
    labels = [0, 1, 2, 3, 4]
    ds = open_dataset(_write(tmp_path, _files(5, labels), "zip"), xflip=True)
    assert len(ds) == 10 and ds.num_images == 5
    for i in range(5):
        plain, lab = ds[i]
        flipped, lab2 = ds[i + 5]
        np.testing.assert_array_equal(flipped, plain[:, :, ::-1])
        assert not np.array_equal(flipped, plain)
        assert lab == lab2 == labels[i]
    assert ds.labels.tolist() == labels + labels
    assert ds[-1][0].tobytes() == ds[9][0].tobytes()
    with pytest.raises(IndexError):
        ds[10]


def test_getitem_returns_a_copy(tmp_path):
    ds = open_dataset(_write(tmp_path, _files(2), "zip"))
    image, _ = ds[0]
    image[:] = 0
    assert ds[0][0].any()


def test_max_size_matches_hand_computed_randomstate0_shuffle(tmp_path):
    # np.random.RandomState(0).shuffle(arange(10)) == [2 8 4 9 1 6 7 3 0 5]; keep 4, sort.
    assert subset_indices(10, 4).tolist() == [2, 4, 8, 9]
    assert subset_indices(10, 4, seed=7).tolist() == [0, 2, 5, 8]  # [8 5 0 2 ...]
    assert subset_indices(10, 20).tolist() == list(range(10))
    labels = list(range(10))
    ds = open_dataset(_write(tmp_path, _files(10, labels), "zip"), max_size=4, xflip=True)
    assert len(ds) == 8 and ds.num_images == 10
    assert ds.labels.tolist() == [2, 4, 8, 9, 2, 4, 8, 9]
    np.testing.assert_array_equal(ds[1][0], _img(4).transpose(2, 0, 1))
    np.testing.assert_array_equal(ds[5][0], _img(4).transpose(2, 0, 1)[:, :, ::-1])
    again = open_dataset(_write(tmp_path / "b", _files(10, labels), "dir"), max_size=4, xflip=True)
    assert again.labels.tolist() == ds.labels.tolist()


@pytest.mark.parametrize("kind", ["zip", "dir"])
@pytest.mark.parametrize("bad", [(16, 3), (8, 1)], ids=["resolution", "channels"])
def test_mismatched_image_names_the_file(tmp_path, kind, bad):
    files = _files(5)
    files["00001/img00000004.png"] = _png(_img(4, res=bad[0], channels=bad[1]))
    ds = open_dataset(_write(tmp_path, files, kind))
    for i in range(4):
        ds[i]
    with pytest.raises(DatasetError, match="img00000004.png"):
        ds[4]
    with pytest.raises(DatasetError, match="img00000004.png"):
        ds.verify()


def test_threaded_batches_from_a_zip_match_serial_reads(tmp_path):
    from sidbench.metrics.image_source import DatasetImageSource

    ds = open_dataset(_write(tmp_path, _files(20, list(range(20))), "zip"), xflip=True)
    serial = torch.cat([b for _, b in DatasetImageSource(ds, threads=0).batches(6, 0, 1)])
    threaded = torch.cat([b for _, b in DatasetImageSource(ds, threads=4).batches(6, 0, 1)])
    assert torch.equal(serial, threaded) and len(serial) == 40
    assert torch.equal(serial[3], torch.from_numpy(_img(3).transpose(2, 0, 1).copy()))
    assert torch.equal(serial[23], torch.from_numpy(_img(3).transpose(2, 0, 1)[:, :, ::-1].copy()))


def test_verify_passes_on_a_consistent_set(tmp_path):
    open_dataset(_write(tmp_path, _files(5), "zip")).verify()


def test_non_square_is_refused(tmp_path):
    files = {"a.png": _png(np.zeros((8, 6, 3), np.uint8))}
    with pytest.raises(DatasetError, match="not square"):
        open_dataset(_write(tmp_path, files, "dir"))


def test_label_count_must_match(tmp_path):
    files = _files(4, [0, 1, 2, 3])
    doc = json.loads(files["dataset.json"])
    files["dataset.json"] = json.dumps({"labels": doc["labels"][:3]}).encode()
    with pytest.raises(DatasetError, match="no label for 00001/img00000003.png"):
        open_dataset(_write(tmp_path, files, "zip"))
    doc["labels"].append(["99999/ghost.png", 1])
    files["dataset.json"] = json.dumps(doc).encode()
    with pytest.raises(DatasetError, match="ghost.png"):
        open_dataset(_write(tmp_path / "b", files, "zip"))


def test_float_labels_are_refused(tmp_path):
    files = _files(2)
    files["dataset.json"] = json.dumps({"labels": [[n, [0.5, 0.5]] for n in sorted(files)]}).encode()
    with pytest.raises(DatasetError, match="not an integer"):
        open_dataset(_write(tmp_path, files, "dir"))


def test_plain_nested_folder_with_jpeg_and_junk(tmp_path):
    root = tmp_path / "plain"
    for rel, i in [("b/z.png", 0), ("a/deep/er/y.png", 1), ("a/x.jpg", 2)]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        PIL.Image.fromarray(_img(i)).save(root / rel)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"junk")
    ds = open_dataset(root)
    assert len(ds) == 3 and ds.image_names == ["a/deep/er/y.png", "a/x.jpg", "b/z.png"]
    np.testing.assert_array_equal(ds[2][0], _img(0).transpose(2, 0, 1))


def test_identity_zip_is_file_sha_and_folder_hash_tracks_content(tmp_path):
    zpath = _write(tmp_path, _files(3, [0, 1, 2]), "zip")
    assert open_dataset(zpath).identity_sha256() == sha256_file(zpath)

    root = _write(tmp_path, _files(3, [0, 1, 2]), "dir")
    h1 = open_dataset(root).identity_sha256()
    assert h1 == open_dataset(root).identity_sha256()
    assert len(h1) == 64 and h1 != sha256_file(zpath)
    names = open_dataset(root).image_names
    (root / "dataset.json").write_text(json.dumps({"labels": [[n, 0] for n in names]}))
    h2 = open_dataset(root).identity_sha256()
    assert h2 != h1  # labels are part of the identity
    (root / "00000/img00000000.png").rename(root / "00000/img00000000b.png")
    (root / "dataset.json").unlink()
    assert open_dataset(root).identity_sha256() not in (h1, h2)  # names are part of it too


def test_describe_is_a_record(tmp_path):
    d = open_dataset(_write(tmp_path, _files(3, [0, 1, 1]), "zip"), xflip=True).describe()
    assert d["name"] == "toy-8x8" and d["count"] == 6 and d["num_images"] == 3
    assert (d["resolution"], d["channels"], d["label_dim"]) == (8, 3, 2)
    assert len(d["sha256"]) == 64
    json.dumps(d)


def test_bad_paths(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nope.zip")
    (tmp_path / "x.bin").write_bytes(b"\0" * 10)
    with pytest.raises(DatasetError, match="neither a folder nor a zip"):
        open_dataset(tmp_path / "x.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        open_dataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="split"):
        open_dataset(_write(tmp_path, _files(2), "zip"), split="test")


def test_damaged_image_is_named(tmp_path):
    files = _files(3)
    files["00000/img00000002.png"] = b"\x89PNG not really"
    ds = open_dataset(_write(tmp_path, files, "zip"))
    with pytest.raises(DatasetError, match="img00000002.png.*cannot decode"):
        ds[2]
