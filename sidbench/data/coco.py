"""The COCO-2014 text-to-image protocol's inputs: the fixed caption list and the val2014 images.

Captions: GigaGAN's / SiD-LSG's `captions.txt`, one caption per line (30,000
lines); caption i is generated with seed i. Lines are split on "\\n" only (a
trailing "\\r" is dropped, nothing else is stripped) and a final newline does not
make an empty caption. Its sha256 is pinned in `sidbench.assets.ASSETS
["coco-captions"]`: another list still works, but the result is flagged as not
comparable with the papers.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from sidbench.assets import ASSETS
from sidbench.errors import DatasetError
from sidbench.fileio import sha256_bytes
from sidbench.images import ImageFiles

NUM_CAPTIONS = 30_000
NUM_VAL2014_IMAGES = 40_504


class CaptionList(list):
    """A list of caption strings that also says which file it came from and whether it is the pinned one."""

    sha256: str
    pinned: bool
    path: str

    def describe(self) -> dict:
        return {"path": self.path, "count": len(self), "sha256": self.sha256, "pinned": self.pinned}


def read_captions(path: str | os.PathLike, expect_pinned: bool = True) -> CaptionList:
    """The captions in file order; `.pinned` is True when the file is the GigaGAN/SiD-LSG list.

    With `expect_pinned`, another file triggers a warning (numbers from it are not
    comparable with published ones).
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read captions file {p} ({exc.strerror})",
                           hint=f"give the path to {ASSETS['coco-captions'].filename}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{p} is not UTF-8 text", hint="one caption per line, UTF-8") from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    captions = CaptionList(line[:-1] if line.endswith("\r") else line for line in lines)
    if not captions:
        raise DatasetError(f"{p} has no captions", hint="one caption per line")
    captions.sha256 = sha256_bytes(raw)
    captions.path = str(p)
    pinned = ASSETS["coco-captions"].sha256
    captions.pinned = captions.sha256 == pinned
    if expect_pinned and not captions.pinned:
        warnings.warn(
            f"{p} is not the pinned COCO-2014 caption list (sha256 {captions.sha256[:16]}... != "
            f"{pinned[:16]}..., {len(captions):,} captions vs {NUM_CAPTIONS:,}): results will not be "
            "comparable with the GigaGAN / SiD-LSG numbers",
            stacklevel=2,
        )
    return captions


def list_val2014_images(folder: str | os.PathLike,
                        expect_count: int | None = NUM_VAL2014_IMAGES) -> list[Path]:
    """Image files directly in or below `folder`, sorted by relative POSIX path.

    The files are those every image reader takes (`sidbench.images.ImageFiles`: the one
    extension set, hidden files skipped). Raises when the folder holds no images, or (with
    `expect_count`) a different number of images than COCO val2014's 40,504.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder", hint="give the extracted val2014/ folder")
    with ImageFiles(root) as found:
        files = [root / name for name in found.names]
    if not files:
        raise DatasetError(f"{root} holds no images", hint="give the extracted val2014/ folder")
    if expect_count is not None and len(files) != expect_count:
        raise DatasetError(f"{root} holds {len(files):,} images, COCO val2014 has {expect_count:,}",
                           hint="give the complete, unmodified val2014/ folder")
    return files
