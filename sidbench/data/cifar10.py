"""CIFAR-10 read straight from the official python tarball `cifar-10-python.tar.gz`.

The batches inside are Python pickles, so they are read only from inside the
tarball the user named (never extracted to disk) and unpickled with a restricted
unpickler that can rebuild numpy arrays and nothing else: any other global (a
function such as `os.system`) makes loading fail before it can be called.

Layout: `cifar-10-batches-py/data_batch_1..5` (train, 5 x 10,000) and
`test_batch` (10,000); each a dict with `b"data"` uint8 [N, 3072] whose rows are
the R plane, then G, then B, each 32x32 row-major, and `b"labels"` (0..9).
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from sidbench.data.base import ImageDataset
from sidbench.errors import DatasetError
from sidbench.fileio import sha256_file

FOLDER = "cifar-10-batches-py"
SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# Exactly what a numpy array pickle needs (numpy 1.x and 2.x module paths); `_codecs.encode`
# is how Python 3 protocol-2 pickles spell bytes. No builtins, no other callables.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module == "numpy.core.multiarray" and int(np.__version__.split(".")[0]) >= 2:
            module = "numpy._core.multiarray"  # same function; avoids numpy 2's deprecation shim
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed")


def load_restricted(data: bytes) -> object:
    """Unpickle `data` allowing only numpy array reconstruction (Python 2 pickles read as bytes)."""
    return _ArrayOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()


def is_cifar_tarball(path: str | os.PathLike) -> bool:
    p = Path(path)
    name = p.name.lower()
    return p.is_file() and (name.endswith((".tar.gz", ".tgz", ".tar")))


def _read_batch(tar: tarfile.TarFile, member_name: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        member = tar.getmember(member_name)
    except KeyError:
        raise DatasetError(f"{where} has no {member_name}",
                           hint="give the official cifar-10-python.tar.gz (python version)") from None
    if not member.isfile():
        raise DatasetError(f"{where}:{member_name} is not a regular file")
    f = tar.extractfile(member)
    assert f is not None
    try:
        batch = load_restricted(f.read())
    except Exception as exc:
        raise DatasetError(f"{where}:{member_name} refused or unreadable ({type(exc).__name__}: {exc})",
                           hint="this is not an official CIFAR-10 batch; use the original tarball") from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DatasetError(f"{where}:{member_name} is not a CIFAR batch (no data/labels)")
    data, labels = batch[b"data"], batch[b"labels"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32):
        raise DatasetError(f"{where}:{member_name}: data is not uint8 [N, 3072]")
    if not (isinstance(labels, list) and all(isinstance(v, int) and 0 <= v < 10 for v in labels)):
        raise DatasetError(f"{where}:{member_name}: labels are not integers 0..9")
    if len(labels) != data.shape[0]:
        raise DatasetError(f"{where}:{member_name}: {len(labels)} labels for {data.shape[0]} images")
    return data, np.asarray(labels, dtype=np.int64)


class CIFAR10Tarball(ImageDataset):
    """CIFAR-10 (train: 50,000 or test: 10,000 images, 32x32x3, 10 classes) held in memory."""

    def __init__(self, path: str | os.PathLike, *, split: str = "train", use_labels: bool = True,
                 xflip: bool = False, max_size: int | None = None, random_seed: int = 0,
                 subset: str = "edm-seeded"):
        if split not in SPLITS:
            raise DatasetError(f"unknown CIFAR-10 split {split!r}", hint="use 'train' or 'test'")
        self.path = Path(path)
        self.split = split
        where = str(self.path)
        try:
            with tarfile.open(self.path, "r:*") as tar:
                parts = [_read_batch(tar, f"{FOLDER}/{b}", where) for b in SPLITS[split]]
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DatasetError(f"{where}: cannot read as a tar archive ({exc})",
                               hint="give the official cifar-10-python.tar.gz") from exc
        data = np.concatenate([d for d, _ in parts])
        self._images = data.reshape(-1, 3, 32, 32)  # rows are R, G, B planes: already CHW
        labels = np.concatenate([lab for _, lab in parts])
        super().__init__(
            name="cifar10" if split == "train" else "cifar10-test",
            num_images=self._images.shape[0], resolution=32, channels=3,
            raw_labels=labels, label_dim=10, use_labels=use_labels, xflip=xflip,
            max_size=max_size, random_seed=random_seed, source=where, subset=subset,
        )

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        return self._images[raw_idx]

    def _compute_identity(self) -> str:
        return sha256_file(self.path)
