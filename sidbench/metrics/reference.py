"""Reference statistics files (.npz): EDM's, ADM's VIRTUAL batches, and our own.

Loading never enables pickle (`allow_pickle=False`): an npz holding object arrays is refused, and
so is anything that would make FID meaningless (string or wrong-shape arrays, NaN/Inf, a sigma
that is not a symmetric PSD matrix; see `gaussian.check_gaussian`), each with a one-line error.
Formats read:
- EDM (`cifar10-32x32.npz`, ...): `mu`, `sigma` (unbiased covariance).
- ADM VIRTUAL (`VIRTUAL_imagenet64_labeled.npz`): `arr_0` = reference images (uint8 NHWC), `mu`,
  `sigma`, `mu_s`, `sigma_s`. The images are loaded only on request (`reference_images`).
- Ours: EDM's keys plus `num_images` (int64) and `meta_json` (UTF-8 JSON as a uint8 array), so a
  file stays readable by EDM's `fid.py` and carries its provenance (dataset sha256, image count,
  extractor name + sha256, protocol name + version, covariance convention).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sidbench.errors import AssetError, ConfigError
from sidbench.fileio import atomic_path
from sidbench.jsonsafe import decode_nonfinite, dumps
from sidbench.metrics.gaussian import check_gaussian

META_KEY = "meta_json"


@dataclass(frozen=True)
class ReferenceStats:
    mu: np.ndarray
    sigma: np.ndarray
    num_images: int | None  # None when the file does not say (EDM's npz)
    meta: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    keys: tuple[str, ...] = ()

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    @property
    def has_images(self) -> bool:
        return "arr_0" in self.keys


def _open(path: str | os.PathLike):
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise AssetError(f"reference statistics file not found: {p}",
                         hint="pass the .npz path (EDM/ADM publish them) or run `sidbench refstats`")
    if not zipfile.is_zipfile(p):
        raise AssetError(f"{p} is not an .npz archive", hint="reference statistics must be a NumPy .npz file")
    try:
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise AssetError(f"cannot read {p} as .npz: {exc}") from None


def _get(npz, key: str, path: str) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as exc:
        if "pickle" in str(exc):  # object arrays need pickle, which we never enable
            raise AssetError(f"{path}: array '{key}' holds Python objects and would need pickle to load",
                             hint="use a statistics file with plain numeric arrays (mu, sigma)") from None
        raise AssetError(f"{path}: array '{key}' cannot be read ({exc})",
                         hint="the file is damaged") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise AssetError(f"{path}: array '{key}' cannot be read ({exc})",
                         hint="the file is damaged") from None


def _count(value: Any, what: str) -> int:
    """An image count: a non-negative integer scalar (numpy 0-d integer array or int, not bool)."""
    arr = np.asarray(value)
    if arr.shape != () or arr.dtype.kind not in "iu" or isinstance(value, bool) or int(arr) < 1:
        raise AssetError(f"{what} must be a positive integer, got {value!r}"[:200],
                         hint="our statistics files store num_images as an int64 scalar")
    return int(arr)


def _meta(raw: np.ndarray, path: str) -> dict[str, Any]:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise AssetError(f"{path}: '{META_KEY}' is {raw.dtype} {raw.shape}; "
                         "expected UTF-8 JSON bytes (uint8 [n])")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise AssetError(f"{path}: '{META_KEY}' is not valid UTF-8 JSON") from None
    if not isinstance(meta, dict):
        raise AssetError(f"{path}: '{META_KEY}' holds a JSON {type(meta).__name__}, expected an object")
    return decode_nonfinite(meta)


def load_reference(path: str | os.PathLike, expected_dim: int | None = None, *,
                   check_psd: bool = True) -> ReferenceStats:
    """Read `mu`, `sigma` (+ our `num_images`, `meta_json`) from an EDM/ADM/sidbench npz.

    `check_psd=False` leaves the symmetry/PSD test (`check_reference_psd`) to the caller, who may
    run it while other work proceeds; every other check is made here.
    """
    p = os.fspath(path)
    with _open(p) as npz:
        keys = tuple(npz.files)
        # every array is read (an object array is refused whatever its name), each once; the ADM
        # image batch is plain uint8 and 100+ MB: not read here
        arrays = {key: _get(npz, key, p) for key in keys if key != "arr_0"}
    missing = [k for k in ("mu", "sigma") if k not in keys]
    if missing:
        raise AssetError(f"{p} has no {' or '.join(missing)} (keys: {', '.join(keys) or 'none'})",
                         hint="expected EDM/ADM reference statistics with 'mu' and 'sigma'")
    mu, sigma = arrays["mu"], arrays["sigma"]
    num = _count(arrays["num_images"], f"{p}: 'num_images'") if "num_images" in keys else None
    meta = _meta(arrays[META_KEY], p) if META_KEY in keys else {}
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise AssetError(f"{p}: mu has shape {mu.shape} and sigma {sigma.shape}; expected [D] and [D, D]")
    if expected_dim is not None and mu.shape[0] != expected_dim:
        raise AssetError(f"{p} holds {mu.shape[0]}-d statistics but the extractor gives "
                         f"{expected_dim}-d features",
                         hint="use reference statistics computed with the same extractor and feature layer")
    # numeric, finite (symmetric, PSD); the stored sigma itself is kept (bit for bit) when it passes
    check_gaussian(mu, sigma, error=AssetError, where=f"{p}: ", psd=check_psd)
    mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    if num is None and "num_images" in meta:
        num = _count(meta["num_images"], f"{p}: meta_json 'num_images'")
    return ReferenceStats(mu=mu, sigma=sigma, num_images=num, meta=meta, path=p, keys=keys)


def check_reference_psd(ref: ReferenceStats) -> None:
    """The symmetry/PSD test `load_reference(check_psd=False)` skipped (AssetError naming the file)."""
    check_gaussian(ref.mu, ref.sigma, error=AssetError, where=f"{ref.path}: ")


def reference_images(path: str | os.PathLike) -> np.ndarray:
    """ADM VIRTUAL batch images (`arr_0`, uint8 [N, H, W, C]) without pickle."""
    p = os.fspath(path)
    with _open(p) as npz:
        if "arr_0" not in npz.files:
            raise AssetError(f"{p} holds no reference images ('arr_0')",
                             hint="ADM's VIRTUAL_*.npz batches carry them; EDM's statistics do not")
        arr = _get(npz, "arr_0", p)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[0] == 0 or arr.shape[3] not in (1, 3):
        raise AssetError(f"{p}: 'arr_0' is {arr.dtype} {arr.shape}; expected uint8 [N, H, W, C], C = 1 or 3")
    return arr


def save_reference(path: str | os.PathLike, stats: Any, meta: dict[str, Any] | None = None,
                   unbiased: bool | None = None) -> None:
    """Write mu/sigma (+ num_images, meta_json) atomically.

    `stats` is a `FeatureStats` (covariance convention `unbiased`, default True), a
    `ReferenceStats`, or a mapping with `mu`, `sigma` and optionally `num_images`.
    """
    from sidbench.metrics.stats import FeatureStats

    meta = dict(meta or {})
    if isinstance(stats, FeatureStats):
        unbiased = True if unbiased is None else unbiased
        mu, sigma, num = stats.mean(), stats.cov(unbiased=unbiased), stats.num
    elif isinstance(stats, ReferenceStats):
        mu, sigma, num = stats.mu, stats.sigma, stats.num_images
    else:
        mu, sigma = np.asarray(stats["mu"]), np.asarray(stats["sigma"])
        num = int(stats["num_images"]) if "num_images" in stats else None
    if unbiased is not None:
        meta.setdefault("cov", "unbiased" if unbiased else "biased")
    mu, sigma = np.asarray(mu), np.asarray(sigma)
    try:  # never write a file that load_reference would refuse
        check_gaussian(mu, sigma)
    except ConfigError as exc:
        raise ConfigError(f"not writing {os.fspath(path)}: {exc.message}", hint=exc.hint) from None
    arrays: dict[str, np.ndarray] = {"mu": np.asarray(mu, dtype=np.float64),
                                     "sigma": np.asarray(sigma, dtype=np.float64)}
    if num is not None:
        arrays["num_images"] = np.asarray(num, dtype=np.int64)
        meta.setdefault("num_images", int(num))
    arrays[META_KEY] = np.frombuffer(dumps(meta, indent=None).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
