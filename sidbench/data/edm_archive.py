"""Image datasets in EDM's `dataset_tool` layout: a zip file or a folder of images.

The same reader serves plain image folders (any nesting): images are every file
whose extension PIL can open, in sorted order of their relative POSIX path (EDM's
order); hidden files and `__MACOSX/` entries are skipped. An optional
`dataset.json` at the root holds `{"labels": [["00000/img00000000.png", 6], ...]}`
or `{"labels": null}`; integer labels only (EDM's float label vectors are refused).

Pixels are decoded with PIL: modes L, LA, RGB and RGBA are used as they are
(1, 2, 3, 4 channels, as EDM does); palette (P) images are converted to RGB or
RGBA and 1-bit images to L; any other mode is an error naming the file. Each
image is checked against the first one when it is read (`verify()` checks every
file's header up front).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import PIL.Image

from sidbench.data.base import ImageDataset, check_image
from sidbench.errors import DatasetError
from sidbench.fileio import sha256_file

LABELS_FILE = "dataset.json"
_AS_IS = {"L", "LA", "RGB", "RGBA"}
_CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def image_extensions() -> set[str]:
    """Lower-case extensions (with dot) that PIL can open."""
    PIL.Image.init()
    return {ext.lower() for ext in PIL.Image.registered_extensions()}


def _skip(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _decode(data: bytes, where: str) -> np.ndarray:
    try:
        with PIL.Image.open(io.BytesIO(data)) as img:
            img = _normalise_mode(img, where)
            return np.asarray(img)
    except DatasetError:
        raise
    except Exception as exc:  # PIL raises many types for a damaged file
        raise DatasetError(f"{where}: cannot decode image ({type(exc).__name__}: {exc})",
                           hint="re-create or remove the damaged file") from exc


def _normalise_mode(img: PIL.Image.Image, where: str) -> PIL.Image.Image:
    if img.mode in _AS_IS:
        return img
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode == "1":
        return img.convert("L")
    raise DatasetError(f"{where}: unsupported pixel mode {img.mode!r}",
                       hint="convert images to 8-bit L or RGB (EDM's dataset_tool does this)")


def _header_shape(data: bytes, where: str) -> tuple[int, int, int]:
    """(C, H, W) from the image header only, without decoding pixels."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as img:
            mode = img.mode
            if mode == "P":
                mode = "RGBA" if "transparency" in img.info else "RGB"
            elif mode == "1":
                mode = "L"
            if mode not in _CHANNELS:
                raise DatasetError(f"{where}: unsupported pixel mode {img.mode!r}",
                                   hint="convert images to 8-bit L or RGB (EDM's dataset_tool does this)")
            w, h = img.size
            return _CHANNELS[mode], h, w
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"{where}: cannot read image header ({type(exc).__name__}: {exc})",
                           hint="re-create or remove the damaged file") from exc


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
                 max_size: int | None = None, random_seed: int = 0):
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        if self.path.is_dir():
            self._kind = "dir"
            all_names = sorted(
                PurePosixPath(Path(root, f).relative_to(self.path)).as_posix()
                for root, _dirs, files in os.walk(self.path) for f in files
            )
        elif self.path.is_file() and zipfile.is_zipfile(self.path):
            self._kind = "zip"
            all_names = sorted(n for n in self._zipfile().namelist() if not n.endswith("/"))
        else:
            raise DatasetError(f"{self.path} is neither a folder nor a zip file",
                               hint="give an EDM dataset_tool zip/folder, a folder of images, "
                                    "or cifar-10-python.tar.gz")
        exts = image_extensions()
        self._names = [n for n in all_names if not _skip(n) and os.path.splitext(n)[1].lower() in exts]
        self._has_json = LABELS_FILE in all_names
        if not self._names:
            raise DatasetError(f"{self.path}: no image files found", hint="expected PNG/JPEG files")
        first = check_image(_decode(self._read(self._names[0]), self._where(0)), None, self._where(0))
        raw_labels = None
        if use_labels and self._has_json:
            raw_labels = parse_labels(self._read(LABELS_FILE), self._names, f"{self.path}/{LABELS_FILE}")
        super().__init__(
            name=self.path.name[:-4] if self._kind == "zip" and self.path.suffix.lower() == ".zip"
            else self.path.name,
            num_images=len(self._names), resolution=first.shape[1], channels=first.shape[0],
            raw_labels=raw_labels, use_labels=use_labels, xflip=xflip, max_size=max_size,
            random_seed=random_seed, source=str(self.path),
        )

    # --- file access --------------------------------------------------------------------------
    def _zipfile(self) -> zipfile.ZipFile:
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        return self._zip

    def _read(self, name: str) -> bytes:
        if self._kind == "zip":
            return self._zipfile().read(name)
        return (self.path / name).read_bytes()

    def _where(self, raw_idx: int) -> str:
        return f"{self.path}/{self._names[raw_idx]}" if self._kind == "dir" else \
            f"{self.path}:{self._names[raw_idx]}"

    @property
    def image_names(self) -> list[str]:
        """Relative names of the images in the file, in file (raw index) order."""
        return list(self._names)

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        where = self._where(raw_idx)
        return check_image(_decode(self._read(self._names[raw_idx]), where), self.image_shape, where)

    def verify(self) -> None:
        """Check every image's header (size, mode) now instead of when it is read."""
        for i, name in enumerate(self._names):
            c, h, w = _header_shape(self._read(name), self._where(i))
            if (c, h, w) != self.image_shape:
                check_image(np.zeros((h, w, c), np.uint8), self.image_shape, self._where(i))

    def _compute_identity(self) -> str:
        """Zip: sha256 of the file. Folder: sha256 over, for each image and dataset.json in sorted
        order of relative POSIX name, `name (UTF-8) + b"\\0" + sha256(file bytes) (32 raw bytes)`."""
        if self._kind == "zip":
            return sha256_file(self.path)
        names = sorted(self._names + ([LABELS_FILE] if self._has_json else []))
        digest = hashlib.sha256()
        for name in names:
            digest.update(name.encode("utf-8") + b"\0")
            digest.update(bytes.fromhex(sha256_file(self.path / name)))
        return digest.hexdigest()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __getstate__(self) -> dict:
        return dict(self.__dict__, _zip=None)  # reopened lazily in a worker process
