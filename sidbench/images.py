"""Images on disk: quantise, write PNGs atomically, find finished seeds, read folders/zips back.

Generated images are `{seed:06d}.png` files. A PNG is only ever written under its
final name by an atomic rename, and a resumed run re-checks each file by decoding
it, so a crash or a full disk can never leave a half image that is counted.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from sidbench.errors import DatasetError
from sidbench.fileio import atomic_path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
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


def decode_image(data: bytes) -> np.ndarray:
    """Decode PNG/JPEG bytes to uint8 [C, H, W] (grayscale -> 1 channel, anything else -> RGB)."""
    with PIL.Image.open(io.BytesIO(data)) as pil:
        pil.load()
        if pil.mode not in ("L", "RGB"):
            pil = pil.convert("L" if pil.mode in ("1", "I;16", "I", "F") else "RGB")
        arr = np.asarray(pil, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy()


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


def _is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS) and "__MACOSX" not in name


def list_image_files(path: str | os.PathLike) -> list[str]:
    """Relative names (posix) of the images in a folder (recursive) or zip, sorted by name."""
    path = Path(path)
    if path.is_dir():
        names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
    elif path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
    else:
        raise DatasetError(f"{path} is neither a folder nor a zip file",
                           hint="give a folder or .zip of images")
    return sorted(n for n in names if _is_image_name(n))


def iter_image_files(path: str | os.PathLike) -> Iterator[tuple[str, bytes]]:
    """Yield (relative name, file bytes) for each image of a folder or zip, sorted by name."""
    path = Path(path)
    names = list_image_files(path)
    if path.is_dir():
        for name in names:
            yield name, (path / name).read_bytes()
    else:
        with zipfile.ZipFile(path) as zf:
            for name in names:
                yield name, zf.read(name)


def load_image_folder(path: str | os.PathLike, limit: int | None = None) -> np.ndarray:
    """All images (or the first `limit` by name) of a folder or zip as uint8 [N, C, H, W]."""
    images = []
    for name, data in iter_image_files(path):
        if limit is not None and len(images) >= limit:
            break
        try:
            img = decode_image(data)
        except (OSError, SyntaxError, ValueError) as exc:
            raise DatasetError(f"cannot decode image {name} in {path}: {exc}",
                               hint="delete or replace it") from exc
        if images and img.shape != images[0].shape:
            raise DatasetError(
                f"image {name} in {path} has shape {img.shape}, the first one {images[0].shape}",
                hint="all images must have the same size and channels",
            )
        images.append(img)
    if not images:
        raise DatasetError(f"no PNG/JPG images found in {path}", hint="check the path")
    return np.stack(images)
