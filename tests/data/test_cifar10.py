"""CIFAR-10 python tarball: layout, channel order, splits, and refusal of hostile pickles."""

from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from sidbench.data import open_dataset
from sidbench.data.cifar10 import CIFAR10Tarball, load_restricted
from sidbench.errors import DatasetError
from sidbench.fileio import sha256_file

PER_BATCH = 3


def _batch_arrays(b: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.RandomState(b)
    data = rng.randint(0, 256, size=(PER_BATCH, 3072)).astype(np.uint8)
    return data, [(b + i) % 10 for i in range(PER_BATCH)]


def _py3_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    batch = {b"batch_label": b"fake batch", b"labels": labels, b"data": data,
             b"filenames": [f"f{i}.png".encode() for i in range(len(labels))]}
    return pickle.dumps(batch, protocol=2)


def _py2_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """Byte-for-byte what Python 2 cPickle writes for {'data': array, 'labels': [...]} (str keys,
    `numpy.core.multiarray._reconstruct`, raw bytes as BINSTRING), like the official batches."""
    n = data.shape[0]
    arr = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
           b"(K\x01K" + bytes([n]) + b"M" + struct.pack("<H", 3072) + b"\x86"
           b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
           b"\x89T" + struct.pack("<i", data.size) + data.tobytes() + b"tb")
    labs = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return b"\x80\x02}(U\x04data" + arr + b"U\x06labels" + labs + b"u."


def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def _fake_cifar(tmp_path: Path, writer=_py3_pickle) -> tuple[Path, np.ndarray, np.ndarray]:
    members, datas, labels = {}, [], []
    for b in range(1, 7):
        data, labs = _batch_arrays(b)
        members[f"data_batch_{b}" if b <= 5 else "test_batch"] = writer(data, labs)
        datas.append(data)
        labels.append(labs)
    members["batches.meta"] = pickle.dumps({b"label_names": [b"airplane"]}, protocol=2)
    path = _tarball(tmp_path / "cifar-10-python.tar.gz", members)
    return path, np.concatenate(datas), np.concatenate(labels)


@pytest.mark.parametrize("writer", [_py3_pickle, _py2_pickle], ids=["py3-pickle", "py2-pickle"])
def test_reads_train_and_test_with_labels(tmp_path, writer):
    path, data, labels = _fake_cifar(tmp_path, writer)
    train = open_dataset(path)
    assert isinstance(train, CIFAR10Tarball)
    assert (len(train), train.resolution, train.channels, train.label_dim) == (5 * PER_BATCH, 32, 3, 10)
    assert train.labels.tolist() == labels[: 5 * PER_BATCH].tolist()
    image, label = train[4]
    assert image.shape == (3, 32, 32) and image.dtype == np.uint8 and label == labels[4]
    test = open_dataset(path, split="test")
    assert len(test) == PER_BATCH and test.name == "cifar10-test"
    np.testing.assert_array_equal(test[1][0].reshape(-1), data[5 * PER_BATCH + 1])
    assert train.identity_sha256() == sha256_file(path)


def test_channel_order_is_r_g_b_planes(tmp_path):
    data = np.zeros((1, 3072), np.uint8)
    data[0, 0], data[0, 1024], data[0, 2048] = 10, 20, 30  # pixel (y=0, x=0) in R, G, B planes
    data[0, 1 * 32 + 2] = 77  # R at (y=1, x=2)
    data[0, 2048 + 31 * 32 + 30] = 99  # B at (y=31, x=30)
    members = {f"data_batch_{b}": _py3_pickle(data, [7]) for b in range(1, 6)}
    members["test_batch"] = _py3_pickle(data, [7])
    ds = open_dataset(_tarball(tmp_path / "c.tar.gz", members))
    image, label = ds[0]
    assert image[:, 0, 0].tolist() == [10, 20, 30]
    assert image[0, 1, 2] == 77 and image[2, 31, 30] == 99 and label == 7
    flipped = open_dataset(tmp_path / "c.tar.gz", xflip=True)[5][0]
    assert flipped[0, 1, 32 - 1 - 2] == 77


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=2)
    data, labs = _batch_arrays(1)
    members = {f"data_batch_{b}": _py3_pickle(data, labs) for b in range(1, 6)}
    members["data_batch_3"] = evil
    members["test_batch"] = _py3_pickle(data, labs)
    path = _tarball(tmp_path / "cifar-10-python.tar.gz", members)
    with pytest.raises(DatasetError, match=r"data_batch_3 refused.*(posix|os)\.system is not allowed"):
        open_dataset(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    b"cbuiltins\neval\n(X\x04\x00\x00\x001+1tR.",
    b"cnumpy\nload\n(X\x01\x00\x00\x00xtR.",
    b"\x80\x02cnumpy.core.multiarray\nscalar\n.",
])
def test_restricted_unpickler_rejects_other_globals(payload):
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        load_restricted(payload)


def test_missing_batch_and_wrong_content(tmp_path):
    data, labs = _batch_arrays(1)
    members = {f"data_batch_{b}": _py3_pickle(data, labs) for b in range(1, 5)}
    with pytest.raises(DatasetError, match="no cifar-10-batches-py/data_batch_5"):
        open_dataset(_tarball(tmp_path / "a.tar.gz", members))
    members["data_batch_5"] = _py3_pickle(data[:, :100], labs)
    members["test_batch"] = members["data_batch_5"]
    with pytest.raises(DatasetError, match="uint8 \\[N, 3072\\]"):
        open_dataset(_tarball(tmp_path / "b.tar.gz", members))
    members["data_batch_5"] = _py3_pickle(data, [0, 1, 12])
    with pytest.raises(DatasetError, match="labels"):
        open_dataset(_tarball(tmp_path / "c.tar.gz", members))
    (tmp_path / "d.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DatasetError, match="tar"):
        open_dataset(tmp_path / "d.tar.gz")
    with pytest.raises(DatasetError, match="split"):
        CIFAR10Tarball(tmp_path / "a.tar.gz", split="val")


def test_use_labels_off_and_max_size(tmp_path):
    path, _, labels = _fake_cifar(tmp_path)
    ds = open_dataset(path, use_labels=False, max_size=4)
    assert ds.label_dim == 0 and ds.labels is None and len(ds) == 4
    sub = open_dataset(path, max_size=4)
    keep = np.arange(15)
    np.random.RandomState(0).shuffle(keep)
    assert sub.labels.tolist() == labels[np.sort(keep[:4])].tolist()
