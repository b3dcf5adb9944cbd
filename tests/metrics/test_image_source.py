"""Image sources: every path reads the same pixels, subsets are named and recorded, sharding is exact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import sidbench.metrics.image_source as image_source
from sidbench.data import open_dataset
from sidbench.data.subset import subset_indices
from sidbench.errors import ConfigError, DatasetError
from sidbench.images import load_image_folder
from sidbench.metrics.image_source import (
    DatasetImageSource,
    FileImageSource,
    ImageSource,
    TensorImageSource,
    default_read_threads,
    open_images,
)
from tests.data._image_modes import MODES, image_set, make, write_dir, write_zip


def _all(source: ImageSource, batch_size: int = 3) -> torch.Tensor:
    return torch.cat([images for _, images in source.batches(batch_size, 0, 1)])


@pytest.mark.parametrize("mode", list(MODES))
def test_every_path_gives_the_same_tensor_and_channels(tmp_path, mode):
    files, expected = image_set(mode, 6)
    folder = write_dir(tmp_path / "set", files)
    archive = write_zip(tmp_path / "set.zip", files)
    want = torch.from_numpy(expected)
    assert want.shape[1] == MODES[mode]
    for path in (folder, archive):
        paths = {
            "eval --images": _all(open_images(path)),
            "FileImageSource": _all(FileImageSource(path, threads=2)),
            "open_dataset": torch.from_numpy(np.stack([im for im, _ in open_dataset(path)])),
            "reference / refstats": _all(DatasetImageSource(open_dataset(path, use_labels=False))),
            "load_image_folder": torch.from_numpy(load_image_folder(path)),
        }
        for what, got in paths.items():
            assert got.dtype == torch.uint8, (path, what)
            assert torch.equal(got, want), (path.name, what)
        assert open_dataset(path).channels == MODES[mode]


def _numbered_zip(tmp_path, n: int = 10):
    """A zip of n 8x8 grey images, image i filled with the value i."""
    from sidbench.images import encode_png

    files = {f"img{i:03d}.png": encode_png(np.full((1, 8, 8), i, np.uint8)) for i in range(n)}
    files["dataset.json"] = json.dumps({"labels": [[f"img{i:03d}.png", i % 3] for i in range(n)]}).encode()
    return write_zip(tmp_path / "numbered.zip", files)


def _values(source: ImageSource) -> list[int]:
    return _all(source)[:, 0, 0, 0].tolist()


def test_first_and_edm_seeded_subsets_give_the_documented_images_and_are_recorded(tmp_path):
    # np.random.RandomState(0).shuffle(arange(10)) == [2 8 4 9 1 6 7 3 0 5]: keep 3, sort -> [2, 4, 8]
    path = _numbered_zip(tmp_path)
    first = open_images(path, 3)
    assert _values(first) == [0, 1, 2]
    assert first.describe()["subset"] == {"policy": "first", "count": 3, "available": 10}
    seeded = open_images(path, 3, subset="edm-seeded")
    assert _values(seeded) == [2, 4, 8]
    assert seeded.describe()["subset"] == {"policy": "edm-seeded", "count": 3, "available": 10, "seed": 0}
    # RandomState(7).shuffle(arange(10)) == [8 5 0 2 ...]: keep 3, sort -> [0, 5, 8]
    assert _values(open_images(path, 3, subset="edm-seeded", subset_seed=7)) == [0, 5, 8]

    ds = open_dataset(path, use_labels=False)
    as_ref = DatasetImageSource(ds, 3)  # datasets default to EDM's subset
    assert _values(as_ref) == [2, 4, 8] and as_ref.describe()["subset"]["policy"] == "edm-seeded"
    assert _values(open_images(ds, 3)) == [2, 4, 8]
    assert _values(DatasetImageSource(ds, 3, subset="first")) == [0, 1, 2]

    limited = open_dataset(path, max_size=3)
    assert [int(im[0, 0, 0]) for im, _ in limited] == [2, 4, 8] and limited.labels.tolist() == [2, 1, 2]
    assert limited.describe()["subset"] == {"policy": "edm-seeded", "count": 3, "available": 10, "seed": 0}
    assert [int(im[0, 0, 0]) for im, _ in open_dataset(path, max_size=3, subset="first")] == [0, 1, 2]

    images = _all(FileImageSource(path))
    assert _values(open_images(images, 3)) == [0, 1, 2]
    tensor_seeded = open_images(images, 3, subset="edm-seeded")
    assert _values(tensor_seeded) == [2, 4, 8] and tensor_seeded.describe()["subset"]["count"] == 3


def test_asking_for_more_images_than_there_are(tmp_path):
    path = _numbered_zip(tmp_path)
    with pytest.raises(DatasetError, match="holds 10 images, 11 were asked for"):
        open_images(path, 11)  # first-N: N generated images are needed
    with pytest.raises(DatasetError, match="holds 10 images, 11 were asked for"):
        TensorImageSource.limited(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), 11)
    everything = open_images(path, 11, subset="edm-seeded")  # EDM's max_size: at most N
    assert _values(everything) == list(range(10))
    assert everything.describe()["subset"] == {"policy": "edm-seeded", "count": 10, "available": 10,
                                               "seed": 0}


@pytest.mark.parametrize("count", [0, -3, 2.5, True, "3"])
def test_bad_image_counts_are_refused(tmp_path, count):
    path = _numbered_zip(tmp_path)
    for make_source in (lambda: open_images(path, count), lambda: open_dataset(path, max_size=count),
                        lambda: subset_indices(10, count, "first")):
        with pytest.raises(ConfigError, match="at least 1"):
            make_source()


@pytest.mark.parametrize("subset", ["edm", "random", "First", ""])
def test_unknown_subset_policies_are_refused(tmp_path, subset):
    path = _numbered_zip(tmp_path)
    for make_source in (lambda: open_images(path, 3, subset=subset),
                        lambda: open_dataset(path, subset=subset),
                        lambda: DatasetImageSource(open_dataset(path), 3, subset=subset)):
        with pytest.raises(ConfigError, match="unknown subset policy") as err:
            make_source()
        assert "first, edm-seeded" in err.value.hint
    with pytest.raises(ConfigError, match="Did you mean 'edm-seeded'"):
        open_images(path, 3, subset="edm-seed")


@pytest.mark.parametrize("world", [1, 2, 3, 7])
@pytest.mark.parametrize("prefetch", [False, True])
def test_ranks_cover_every_image_once_in_a_fixed_order(tmp_path, world, prefetch):
    source = open_images(_numbered_zip(tmp_path, 23))
    source.prefetch = prefetch
    seen = []
    for rank in range(world):
        for idx, images in source.batches(4, rank, world):
            assert len(idx) <= 4 and all(i % world == rank for i in idx.tolist())
            assert images[:, 0, 0, 0].tolist() == idx.tolist()
            seen += idx.tolist()
    assert sorted(seen) == list(range(23))
    assert [idx.tolist() for idx, _ in source.batches(2, 1, 3)] == [[1, 4], [7, 10], [13, 16], [19, 22]]


def test_batches_default_to_the_process_group_and_refuse_bad_settings(tmp_path):
    source = open_images(_numbered_zip(tmp_path, 5))
    assert [idx.tolist() for idx, _ in source.batches(2)] == [[0, 1], [2, 3], [4]]  # no group: rank 0 of 1
    with pytest.raises(ConfigError, match="batch size"):
        next(source.batches(0))
    with pytest.raises(ConfigError, match="outside a world"):
        next(source.batches(2, 3, 3))
    assert list(source.batches(4, 6, 7)) == []


def test_threads_and_prefetch_do_not_change_the_images(tmp_path):
    files, expected = image_set("RGB", 13)
    path = write_zip(tmp_path / "s.zip", files)
    plain = FileImageSource(path, threads=0)
    plain.prefetch = False
    for source in (plain, FileImageSource(path, threads=4), FileImageSource(path, threads=1)):
        assert torch.equal(_all(source, 4), torch.from_numpy(expected))


def test_stopping_early_leaves_no_reader_running(tmp_path):
    import threading

    source = open_images(_numbered_zip(tmp_path, 20))
    batches = source.batches(3, 0, 1)
    _, images = next(batches)  # the second batch is being read in the background now
    batches.close()
    assert images[:, 0, 0, 0].tolist() == [0, 1, 2]

    assert not [t for t in threading.enumerate() if t.name.startswith("sidbench-read")]


@pytest.mark.parametrize("kind", ["dir", "zip"])
def test_a_damaged_image_is_named_even_when_read_in_the_background(tmp_path, kind):
    files, _ = image_set("RGB", 9)
    name = sorted(files)[7]
    files[name] = files[name][:30]
    path = write_dir(tmp_path / "d", files) if kind == "dir" else write_zip(tmp_path / "d.zip", files)
    source = open_images(path)
    with pytest.raises(DatasetError, match=f"{name}: cannot decode image"):
        _all(source, 2)


def test_images_of_different_shapes_are_named(tmp_path):
    files, _ = image_set("RGB", 5)
    files["zz.png"] = make("L", 0)[1]
    with pytest.raises(DatasetError, match="zz.png has shape"):
        _all(open_images(write_dir(tmp_path / "d", files)), 2)


def test_a_transform_is_applied_per_image_and_recorded(tmp_path):
    files, expected = image_set("RGB", 4, res=12)
    source = open_images(write_dir(tmp_path / "d", files))
    source.transform = image_source.center_crop_resize(6, "bicubic")
    got = _all(source)
    assert got.shape == (4, 3, 6, 6)
    assert torch.equal(got[1], torch.from_numpy(source.transform(expected[1]).copy()))
    assert source.describe()["transform"] == "center-crop+bicubic-6"


def test_unsupported_extensions_are_ignored_on_every_path(tmp_path):
    files, expected = image_set("RGB", 3)
    files.update({"x.gif": b"GIF89a", "notes.txt": b"hello", "y.npy": b"\x93NUMPY"})
    folder = write_dir(tmp_path / "d", files)
    assert torch.equal(_all(open_images(folder)), torch.from_numpy(expected))
    assert len(open_dataset(folder)) == 3
    for empty in ({"x.gif": b"GIF89a"}, {}):
        root = write_dir(tmp_path / f"e{len(empty)}", empty)
        root.mkdir(exist_ok=True)
        with pytest.raises(DatasetError, match="no image"):
            open_images(root)
        with pytest.raises(DatasetError, match="no image"):
            open_dataset(root)


def test_read_threads_never_oversubscribe_a_small_machine(monkeypatch):
    for cpus, threads in [(1, 0), (2, 0), (3, 2), (4, 3), (16, 8), (128, 8)]:
        monkeypatch.setattr(image_source, "usable_cpus", lambda c=cpus: c)
        assert default_read_threads() == threads


def test_other_inputs(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        open_images(tmp_path / "missing")
    with pytest.raises(ConfigError, match="cannot read images from a int"):
        open_images(3)
    with pytest.raises(ConfigError, match="uint8 images"):
        open_images(torch.zeros(2, 3, 4, 4))
    src = TensorImageSource(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))
    assert open_images(src) is src and "subset" not in src.describe()
