"""Image datasets in EDM's `dataset_tool` layout: a zip file or a folder of images.

The same reader serves plain image folders (any nesting). Files, their order and their
pixels come from `sidbench.images` (the one reader every path uses): images are the
files with an accepted extension (`sidbench.images.IMAGE_EXTENSIONS`) in sorted order
of their relative POSIX path (EDM's order), hidden files and `__MACOSX/` skipped, and
each is decoded under the one mode policy (grey -> 1 channel, anything else -> RGB,
alpha dropped; see `sidbench.images.decode_image`). An optional `dataset.json` at the
root holds `{"labels": [["00000/img00000000.png", 6], ...]}` or `{"labels": null}`;
integer labels only (EDM's float label vectors are refused). Each image is checked
against the first one when it is read (`verify()` checks every file's header up front);
a bad file is named in the error.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from sidbench.data.base import ImageDataset, check_image
from sidbench.errors import DatasetError
from sidbench.fileio import sha256_file
from sidbench.images import IMAGE_EXTENSIONS, ImageFiles

LABELS_FILE = "dataset.json"


def parse_labels(text: bytes, image_names: list[str], where: str) -> np.ndarray | None:
    """int64 labels in image order from a dataset.json, or None when it says `"labels": null`."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise DatasetError(f"{where}: not valid JSON ({exc})", hint="fix or remove dataset.json") from exc
    if not isinstance(doc, dict) or "labels" not in doc:
        raise DatasetError(f"{where}: no 'labels' key",
                           hint='expected {"labels": [["name.png", 0], ...]} or null')
    pairs = doc["labels"]
    if pairs is None:
        return None
    table: dict[str, int] = {}
    for entry in pairs:
        if not (isinstance(entry, list | tuple) and len(entry) == 2 and isinstance(entry[0], str)):
            raise DatasetError(f"{where}: bad label entry {entry!r}",
                               hint='entries are ["relative/name.png", int]')
        name, value = entry[0].replace("\\", "/"), entry[1]
        if isinstance(value, bool) or not isinstance(value, int):
            raise DatasetError(f"{where}: label of {name} is {value!r}, not an integer class",
                               hint="only integer class labels are supported")
        table[name] = value
    missing = [n for n in image_names if n not in table]
    if missing:
        raise DatasetError(f"{where}: no label for {missing[0]} ({len(missing)} image(s) without a label)",
                           hint="every image needs a label, or set use_labels=False")
    if len(table) != len(image_names):
        extra = sorted(set(table) - set(image_names))
        raise DatasetError(f"{where}: {len(table)} labels for {len(image_names)} images "
                           f"(e.g. {extra[0]} has a label but no image)",
                           hint="dataset.json must list exactly the images in the dataset")
    return np.array([table[n] for n in image_names], dtype=np.int64)


class EDMImageDataset(ImageDataset):
    """EDM `dataset_tool` zip or folder (also any plain folder of same-size square images)."""

    def __init__(self, path: str | os.PathLike, *, use_labels: bool = True, xflip: bool = False,
                 max_size: int | None = None, random_seed: int = 0, subset: str = "edm-seeded"):
        self.path = Path(path)
        if self.path.is_file() and not zipfile.is_zipfile(self.path):
            raise DatasetError(f"{self.path} is neither a folder nor a zip file",
                               hint="give an EDM dataset_tool zip/folder, a folder of images, "
                                    "or cifar-10-python.tar.gz")
        self._files = ImageFiles(self.path)
        self._names = self._files.names
        self._has_json = self._files.has(LABELS_FILE)
        if not self._names:
            raise DatasetError(f"{self.path}: no image files found",
                               hint=f"images are files ending in {', '.join(IMAGE_EXTENSIONS)}")
        first = check_image(self._files.load(0), None, self._where(0))
        raw_labels = None
        if use_labels and self._has_json:
            raw_labels = parse_labels(self._files.read(LABELS_FILE), self._names,
                                      self._files.where(LABELS_FILE))
        super().__init__(
            name=self.path.name[:-4] if self._files.kind == "zip" and self.path.suffix.lower() == ".zip"
            else self.path.name,
            num_images=len(self._names), resolution=first.shape[1], channels=first.shape[0],
            raw_labels=raw_labels, use_labels=use_labels, xflip=xflip, max_size=max_size,
            random_seed=random_seed, source=str(self.path), subset=subset,
        )

    def _where(self, raw_idx: int) -> str:
        return self._files.where(self._names[raw_idx])

    @property
    def image_names(self) -> list[str]:
        """Relative names of the images in the file, in file (raw index) order."""
        return list(self._names)

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        return check_image(self._files.load(raw_idx), self.image_shape, self._where(raw_idx))

    def verify(self) -> None:
        """Check every image's header (size, channels) now instead of when it is read."""
        for i in range(len(self._names)):
            c, h, w = self._files.header(i)
            if (c, h, w) != self.image_shape:
                check_image(np.zeros((c, h, w), np.uint8), self.image_shape, self._where(i))

    def _compute_identity(self) -> str:
        """Zip: sha256 of the file. Folder: sha256 over, for each image and dataset.json in sorted
        order of relative POSIX name, `name (UTF-8) + b"\\0" + sha256(file bytes) (32 raw bytes)`."""
        if self._files.kind == "zip":
            return sha256_file(self.path)
        names = sorted(self._names + ([LABELS_FILE] if self._has_json else []))
        digest = hashlib.sha256()
        for name in names:
            digest.update(name.encode("utf-8") + b"\0")
            digest.update(bytes.fromhex(sha256_file(self.path / name)))
        return digest.hexdigest()

    def close(self) -> None:
        self._files.close()
