"""Images on disk: quantise, write PNGs atomically, find finished seeds; the one image decoder
and the one folder/zip reader.

Generated images are `{seed:06d}.png` files. A PNG is only ever written under its
final name by an atomic rename, and a resumed run re-checks each file by decoding
it, so a crash or a full disk can never leave a half image that is counted.

Every image read (generated folders/zips, datasets, reference images) goes through
`decode_image` (one mode policy) and `ImageFiles` (one extension set, one order).
"""

from __future__ import annotations

import io
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
import PIL.Image
import torch

from sidbench.errors import DatasetError
from sidbench.fileio import atomic_path

_SEED_PNG = re.compile(r"^(\d{6,})\.png$")


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Map images in [-1, 1] to uint8 as EDM does: (x * 127.5 + 128).clip(0, 255), truncated.

    Computed in float64 (EDM's sampler output type), so a float32 input quantises
    exactly as EDM's float64 images would.
    """
    return (x.to(torch.float64) * 127.5 + 128).clip(0, 255).to(torch.uint8)


def seed_filename(seed: int) -> str:
    return f"{seed:06d}.png"


def seed_of(name: str) -> int | None:
    """The seed a `{seed:06d}.png` file name stands for (None for any other name)."""
    m = _SEED_PNG.match(name)
    return int(m.group(1)) if m else None


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 [C, H, W] array (C = 1 -> grayscale 'L', C = 3 -> 'RGB')."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected a uint8 [1|3, H, W] array, got {image.dtype} {image.shape}")
    if image.shape[0] == 1:
        pil = PIL.Image.fromarray(np.ascontiguousarray(image[0]), "L")
    else:
        pil = PIL.Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)), "RGB")
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def _write_file(path: Path, data: bytes) -> None:
    """The raw write (a seam the full-disk tests replace)."""
    with open(path, "wb") as f:
        f.write(data)


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a uint8 [C, H, W] image as PNG; the final name appears only once complete.

    No fsync per file: resume re-decodes every PNG (`done_seeds`), so a file emptied by a
    power cut is regenerated, and per-file fsync would cap writing at a few hundred img/s.
    """
    data = encode_png(image)
    with atomic_path(path, fsync=False) as tmp:
        _write_file(tmp, data)


_PNG_END = b"IEND\xaeB`\x82"


def is_complete_png(path: str | os.PathLike) -> bool:
    """True if the file is a whole PNG: ends with its IEND chunk, chunk CRCs check, pixels decode."""
    try:
        data = Path(path).read_bytes()
        if not data.endswith(_PNG_END):
            return False
        with PIL.Image.open(io.BytesIO(data)) as pil:
            if pil.format != "PNG":
                return False
            pil.verify()
        with PIL.Image.open(io.BytesIO(data)) as pil:
            pil.load()
        return True
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError):
        return False


def done_seeds(folder: str | os.PathLike, delete_bad: bool = True) -> set[int]:
    """Seeds whose `{seed:06d}.png` exists in `folder` and decodes completely.

    Files that fail to decode are deleted (when `delete_bad`) so they are regenerated.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return set()
    done = set()
    for entry in os.scandir(folder):
        m = _SEED_PNG.match(entry.name)
        if not m or not entry.is_file():
            continue
        if is_complete_png(entry.path):
            done.add(int(m.group(1)))
        elif delete_bad:
            Path(entry.path).unlink(missing_ok=True)
    return done



# --- reading -------------------------------------------------------------------------------------
# The one decoder and the one folder/zip reader: generated images (eval --images), datasets
# (open_dataset, refstats, EDM dataset_tool zips) and reference images all come through here, so
# the same file gives the same uint8 pixels and channel count on every path.

IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
"""Lower-case extensions read as images; any other file is ignored (clean-fid's set, without .npy).

A fixed list, not "whatever Pillow registers" (EDM's choice), so the set of images in a folder
does not change with the Pillow version or its plugins (PDF, PSD, ... are not images here)."""

_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}
_GRAY = {"1", "L", "LA"} | _SIXTEEN_BIT
_REFUSED = {"I": "32-bit integer", "F": "32-bit float"}
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error,
                  PIL.Image.DecompressionBombError)
_DAMAGED_HINT = "re-create or remove the damaged file"


def _channels(pil: PIL.Image.Image, where: str) -> int:
    """Channels the mode policy gives this image: 1 for grey modes, 3 for every other one."""
    mode = pil.mode
    if mode == "I" and pil.format == "PNG":  # older Pillow opens 16-bit grey PNGs as "I"
        return 1
    if mode in _REFUSED:
        raise DatasetError(f"{where}: {_REFUSED[mode]} pixels (mode {mode!r}) have no defined 8-bit range",
                           hint="save the image as 8-bit or 16-bit grayscale, or as RGB")
    return 1 if mode in _GRAY else 3


def _pixels(pil: PIL.Image.Image, where: str) -> np.ndarray:
    if _channels(pil, where) == 3:
        rgb = pil if pil.mode == "RGB" else pil.convert("RGB")
        return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()
    if pil.mode in _SIXTEEN_BIT or pil.mode == "I":
        wide = np.asarray(pil).astype(np.uint32)
        return (wide >> 8).astype(np.uint8)[None]
    gray = pil if pil.mode == "L" else pil.convert("L")
    return np.array(gray, dtype=np.uint8)[None]


def decode_image(data: bytes, where: str = "image") -> np.ndarray:
    """Decode image bytes to uint8 [C, H, W] under the one mode policy; errors name `where`.

    Mode policy (applied on every path):
    - grey stays 1 channel: L as is, 1-bit -> 0/255, LA -> L (alpha dropped),
      16-bit grey -> its high byte (v >> 8, as Pillow itself reads 16-bit RGB PNGs);
    - everything else becomes 3-channel RGB with Pillow's `convert("RGB")`: RGBA/PA alpha is
      dropped (not composited), P through its palette, CMYK/YCbCr/LAB converted. This is what
      torch-fidelity, clean-fid and EDM2's dataset_tool do; EDM's dataset_tool writes only L or
      RGB, so EDM zips read exactly as EDM reads them.
    - 32-bit integer (I) and float (F) pixels are refused: they have no defined 8-bit range.
    A damaged or truncated file raises DatasetError naming `where`.
    """
    try:
        with PIL.Image.open(io.BytesIO(data)) as pil:
            pil.load()
            return _pixels(pil, where)
    except _DECODE_ERRORS as exc:
        raise DatasetError(f"{where}: cannot decode image ({type(exc).__name__}: {exc})",
                           hint=_DAMAGED_HINT) from None


def image_header(data: bytes, where: str = "image") -> tuple[int, int, int]:
    """(C, H, W) that `decode_image` will give, read from the header only (no pixel decoding)."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as pil:
            w, h = pil.size
            return _channels(pil, where), h, w
    except _DECODE_ERRORS as exc:
        raise DatasetError(f"{where}: cannot read image header ({type(exc).__name__}: {exc})",
                           hint=_DAMAGED_HINT) from None


def is_image_name(name: str) -> bool:
    """True for an image file name: an accepted extension, no hidden or `__MACOSX` path part."""
    parts = PurePosixPath(name).parts
    if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return False
    return parts[-1].lower().endswith(IMAGE_EXTENSIONS)


class ImageFiles:
    """The images of a folder (recursive) or zip, sorted by relative POSIX name (EDM's order).

    `names[i]` is image i. Other files are ignored but can still be read by name (`has`, `read`:
    an EDM dataset's `dataset.json`). Thread-safe reads; picklable (the zip reopens lazily).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        if self.path.is_dir():
            self.kind = "dir"
            every = [Path(root, f).relative_to(self.path).as_posix()
                     for root, _dirs, files in os.walk(self.path) for f in files]
        elif self.path.is_file() and zipfile.is_zipfile(self.path):
            self.kind = "zip"
            try:
                every = [n for n in self._zipfile().namelist() if not n.endswith("/")]
            except (OSError, zipfile.BadZipFile) as exc:
                raise DatasetError(f"{self.path}: cannot read the zip ({exc})", hint=_DAMAGED_HINT) from None
            if len(set(every)) != len(every):
                dup = next(n for n in sorted(every) if every.count(n) > 1)
                raise DatasetError(f"{self.path} holds two entries named {dup}",
                                   hint="re-create the zip with unique names")
        elif not self.path.exists():
            raise DatasetError(f"{self.path} does not exist", hint="check the path")
        else:
            raise DatasetError(f"{self.path} is neither a folder nor a zip file",
                               hint="give a folder or .zip of images")
        self._every = set(every)
        self.names = sorted(n for n in every if is_image_name(n))

    def __len__(self) -> int:
        return len(self.names)

    def _zipfile(self) -> zipfile.ZipFile:
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        return self._zip

    def where(self, name: str) -> str:
        """How an error names a file: `folder/name` or `archive.zip:name`."""
        return f"{self.path}/{name}" if self.kind == "dir" else f"{self.path}:{name}"

    def has(self, name: str) -> bool:
        return name in self._every

    def read(self, name: str) -> bytes:
        try:
            if self.kind == "zip":
                return self._zipfile().read(name)
            return (self.path / name).read_bytes()
        except (OSError, zipfile.BadZipFile, KeyError) as exc:
            raise DatasetError(f"{self.where(name)}: cannot read ({exc})", hint=_DAMAGED_HINT) from None

    def load(self, i: int) -> np.ndarray:
        """Image i decoded to uint8 [C, H, W]."""
        name = self.names[i]
        return decode_image(self.read(name), self.where(name))

    def header(self, i: int) -> tuple[int, int, int]:
        """(C, H, W) of image i from its header."""
        name = self.names[i]
        return image_header(self.read(name), self.where(name))

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self) -> ImageFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        return dict(self.__dict__, _zip=None)


def list_image_files(path: str | os.PathLike) -> list[str]:
    """Relative names (POSIX) of the images in a folder (recursive) or zip, sorted by name."""
    with ImageFiles(path) as files:
        return list(files.names)


def iter_image_files(path: str | os.PathLike) -> Iterator[tuple[str, bytes]]:
    """Yield (relative name, file bytes) for each image of a folder or zip, sorted by name."""
    with ImageFiles(path) as files:
        for name in files.names:
            yield name, files.read(name)


def load_image_folder(path: str | os.PathLike, limit: int | None = None) -> np.ndarray:
    """All images (or the first `limit` by name) of a folder or zip as uint8 [N, C, H, W]."""
    with ImageFiles(path) as files:
        if not files.names:
            raise DatasetError(f"no images found in {path}",
                               hint=f"images are files ending in {', '.join(IMAGE_EXTENSIONS)}")
        images: list[np.ndarray] = []
        for i, name in enumerate(files.names[:limit]):
            img = files.load(i)
            if images and img.shape != images[0].shape:
                raise DatasetError(f"{files.where(name)} has shape {img.shape}, "
                                   f"the first image {images[0].shape}",
                                   hint="all images must have the same size and channels")
            images.append(img)
    return np.stack(images)
