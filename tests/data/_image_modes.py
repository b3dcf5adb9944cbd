"""Image files of every pixel mode the readers must handle, with the pixels the mode policy should give.

The expected pixels are worked out from the arrays the files were made from (not by decoding
the file with the code under test): grey modes keep one channel, alpha is dropped, palettes
are looked up, 16-bit keeps the high byte.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import PIL.Image

# mode name -> channels the policy gives
MODES = {"L": 1, "1": 1, "LA": 1, "RGB": 3, "RGBA": 3, "P": 3, "P-transparent": 3, "16-bit": 1,
         "16-bit-RGB": 3, "CMYK": 3, "JPEG": 3, "JPEG-L": 1}


def _save(pil: PIL.Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    pil.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png16_rgb(arr: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def make(mode: str, i: int, res: int = 8) -> tuple[str, bytes, np.ndarray]:
    """(file extension, file bytes, expected uint8 [C, H, W]) for image i of `mode`."""
    rng = np.random.RandomState(1000 + i)
    rgb = rng.randint(0, 256, (res, res, 3)).astype(np.uint8)
    gray = rng.randint(0, 256, (res, res)).astype(np.uint8)
    if mode == "L":
        return ".png", _save(PIL.Image.fromarray(gray), "PNG"), gray[None]
    if mode == "1":
        bits = gray > 127
        return ".png", _save(PIL.Image.fromarray(bits), "PNG"), (bits * 255).astype(np.uint8)[None]
    if mode == "LA":
        la = np.stack([gray, rng.randint(0, 256, (res, res)).astype(np.uint8)], axis=2)
        return ".png", _save(PIL.Image.fromarray(la, "LA"), "PNG"), gray[None]
    if mode == "RGB":
        return ".png", _save(PIL.Image.fromarray(rgb), "PNG"), rgb.transpose(2, 0, 1)
    if mode == "RGBA":
        alpha = rng.randint(0, 256, (res, res, 1)).astype(np.uint8)
        alpha[0, 0] = 0  # a fully transparent pixel keeps its colour: alpha is dropped, not composited
        rgba = np.concatenate([rgb, alpha], axis=2)
        return ".png", _save(PIL.Image.fromarray(rgba, "RGBA"), "PNG"), rgb.transpose(2, 0, 1)
    if mode in ("P", "P-transparent"):
        palette = rng.randint(0, 256, (256, 3)).astype(np.uint8)
        index = rng.randint(0, 256, (res, res)).astype(np.uint8)
        pil = PIL.Image.fromarray(index, "P")
        pil.putpalette(palette.tobytes())
        kw = {"transparency": int(index[0, 0])} if mode == "P-transparent" else {}
        return ".png", _save(pil, "PNG", **kw), palette[index].transpose(2, 0, 1)
    if mode == "16-bit":
        wide = rng.randint(0, 65536, (res, res)).astype(np.uint16)
        wide[0, :3] = [0, 65535, 257 * 200]  # ends of the range, and 8-bit data stored as 16-bit
        return ".png", _save(PIL.Image.fromarray(wide), "PNG"), (wide >> 8).astype(np.uint8)[None]
    if mode == "16-bit-RGB":
        wide = rng.randint(0, 65536, (res, res, 3)).astype(np.uint16)
        return ".png", png16_rgb(wide), (wide >> 8).astype(np.uint8).transpose(2, 0, 1)
    if mode == "CMYK":
        # exact under any CMYK -> RGB formula: C/M/Y at 0 or 255 with K = 0, or K = 255 (black)
        cmy = rng.randint(0, 2, (res, res, 3)).astype(np.uint8) * 255
        k = (rng.randint(0, 4, (res, res, 1)) == 0).astype(np.uint8) * 255
        cmyk = np.concatenate([np.where(k == 255, 0, cmy), k], axis=2).astype(np.uint8)
        expected = np.where(k == 255, 0, 255 - cmy).astype(np.uint8)
        return ".tif", _save(PIL.Image.fromarray(cmyk, "CMYK"), "TIFF"), expected.transpose(2, 0, 1)
    if mode in ("JPEG", "JPEG-L"):
        pil = PIL.Image.fromarray(rgb if mode == "JPEG" else gray)
        data = _save(pil, "JPEG", quality=90)
        with PIL.Image.open(io.BytesIO(data)) as back:  # JPEG is lossy: what libjpeg decodes
            arr = np.asarray(back)
        return ".jpg", data, arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    raise ValueError(mode)


def image_set(mode: str, n: int, res: int = 8) -> tuple[dict[str, bytes], np.ndarray]:
    """n images of `mode` in two sub-folders: {relative name: bytes}, expected uint8 [n, C, H, W]
    in sorted name order."""
    files, expected = {}, []
    for i in range(n):
        ext, data, exp = make(mode, i, res)
        files[f"{i // 4:02d}/img{i:04d}{ext}"] = data
        expected.append(exp)
    return files, np.stack(expected)


def write_dir(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name in sorted(files, reverse=True):  # stored out of order on purpose
            zf.writestr(name, files[name])
    return path
