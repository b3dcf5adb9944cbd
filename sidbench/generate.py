"""Generate images for a seed list into a folder or zip, resumably.

Image i is a function of seed i alone (per-image generators, see
`sidbench.nets.seeds`), so a run can be cut anywhere and resumed: finished
`{seed:06d}.png` files are kept (each re-checked by decoding), missing ones are
made, and the result is byte-for-byte what an uninterrupted run writes. A
`generate.json` manifest records the network fingerprint and sampler settings;
resuming with different settings is refused rather than mixing two distributions.

Zip output is staged in `OUT.zip.partial/` and packed (atomically, with fixed
timestamps) only once every image exists, so a `.zip` that exists is complete.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import time
import zipfile
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidbench import images as imgio
from sidbench.errors import ConfigError, SidbenchError
from sidbench.fileio import atomic_path, atomic_write_json
from sidbench.nets.sampler import edm_sampler, heun_nfe, onestep_generate
from sidbench.nets.seeds import check_class_idx, format_seeds, latents_and_labels, parse_seeds
from sidbench.progress import make_progress

MANIFEST = "generate.json"
SAMPLERS = ("heun", "onestep")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class GenerateSummary:
    """What a `generate` call did; `images_per_second` counts only images made now."""

    out: Path
    written: int
    skipped: int
    seconds: float
    nfe: int  # network evaluations per image

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.written} images written, {self.skipped} already done -> {self.out} "
            f"({self.seconds:.1f} s, {self.images_per_second:.3g} img/s, {self.nfe} NFE/image)"
        )


def _num(x: float) -> float | str:
    """JSON-safe float: infinities as strings, like the network configs."""
    x = float(x)
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def network_fingerprint(net: torch.nn.Module) -> str:
    """sha256 over parameter/buffer names, dtypes, shapes and values: which weights made the images."""
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _settings(net, sampler: str, device: torch.device, class_idx: int | None, heun: dict, sigma_init: float):
    settings: dict[str, Any] = {
        "sampler": sampler,
        "image_shape": [int(net.img_channels), int(net.img_resolution), int(net.img_resolution)],
        "label_dim": int(getattr(net, "label_dim", 0) or 0),
        "class_idx": class_idx,
        "device_type": device.type,
        "quantize": "edm: (x*127.5+128).clip(0,255) -> uint8, float64",
        "seed_convention": "edm StackedRandomGenerator: latent, class, sampler noise",
    }
    if sampler == "heun":
        settings.update({k: (_num(v) if isinstance(v, float) else v) for k, v in heun.items()})
    else:
        settings["sigma_init"] = _num(sigma_init)
    return settings


def _read_manifest_from(folder: Path) -> dict | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        hint = "use another --out, or delete that folder"
        raise SidbenchError(f"cannot read {path}: {exc}", hint=hint) from exc


def _read_manifest_from_zip(path: Path) -> tuple[dict | None, set[int]]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            manifest = json.loads(zf.read(MANIFEST)) if MANIFEST in names else None
    except (OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise SidbenchError(f"{path} exists but is not a readable zip: {exc}",
                            hint="use another --out") from exc
    seeds = {s for s in map(imgio.seed_of, names) if s is not None}
    return manifest, seeds


def _check_same(old: dict | None, new: dict, where: Path) -> None:
    """Refuse to add images made differently to an existing output."""
    if old is None:
        return
    diffs = []
    for key in sorted(set(old.get("settings", {})) | set(new["settings"])):
        a, b = old.get("settings", {}).get(key), new["settings"].get(key)
        if a != b:
            diffs.append(f"{key}: {a} -> {b}")
    fa, fb = old.get("network", {}).get("fingerprint"), new["network"]["fingerprint"]
    if fa != fb:
        diffs.append(f"network: {str(fa)[:12]} -> {fb[:12]}")
    if diffs:
        raise ConfigError(
            f"{where} holds images made with other settings ({'; '.join(diffs)})",
            hint="use another --out, or the same network and settings to resume",
        )


def _remove_stale_temps(folder: Path) -> None:
    """Delete temporary files a killed run left behind (never under a final name)."""
    for entry in os.scandir(folder):
        if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file():
            Path(entry.path).unlink(missing_ok=True)


def _disk_error(exc: OSError, what: str, finished: int, total: int, folder: Path) -> SidbenchError:
    reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
    return SidbenchError(
        f"could not write {what}: {reason}; {finished} of {total} images are finished in {folder}",
        hint="free disk space and rerun the same command to resume",
    )


def _pack_zip(folder: Path, out: Path, manifest: dict) -> None:
    """Pack the staged PNGs (sorted, fixed timestamps, stored) and the manifest into `out`."""
    names = sorted(n for n in os.listdir(folder) if imgio.seed_of(n) is not None)
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for name in names:
            zf.writestr(zipfile.ZipInfo(name, _ZIP_TIME), (folder / name).read_bytes())
        info = zipfile.ZipInfo(MANIFEST, _ZIP_TIME)
        zf.writestr(info, json.dumps(manifest, indent=2, sort_keys=True) + "\n", zipfile.ZIP_DEFLATED)


def generate(
    net: torch.nn.Module,
    out: str | os.PathLike,
    seeds: str | Sequence[int],
    *,
    batch_size: int = 64,
    num_steps: int = 18,
    sampler: str = "heun",
    sigma_init: float = 2.5,
    class_idx: int | None = None,
    device: str | torch.device = "cpu",
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    S_churn: float = 0.0,
    S_min: float = 0.0,
    S_max: float = math.inf,
    S_noise: float = 1.0,
    network_info: dict | None = None,
    progress: bool = True,
    writers: int = 4,
) -> GenerateSummary:
    """Write `{seed:06d}.png` for every seed into `out` (a folder, or a path ending in .zip).

    `net` must already be on `device`; it is run in eval mode. Seeds already written
    (and decodable) are skipped. `network_info` (e.g. the network.json fields) is
    stored in the manifest for the record; the weights themselves are fingerprinted.
    PNGs are encoded and written by `writers` threads while the next batch is sampled.
    """
    seeds = parse_seeds(seeds)
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler '{sampler}'", hint=f"choose one of {', '.join(SAMPLERS)}")
    if batch_size < 1:
        raise ConfigError(f"batch size {batch_size} must be at least 1", hint="use e.g. --batch 64")
    check_class_idx(class_idx, int(getattr(net, "label_dim", 0) or 0))
    device = torch.device(device)
    params = list(net.parameters())
    if params and params[0].device.type != device.type:
        raise ConfigError(f"the network is on {params[0].device}, not {device}",
                          hint="move it with net.to(device)")
    heun = {"num_steps": int(num_steps), "sigma_min": float(sigma_min), "sigma_max": float(sigma_max),
            "rho": float(rho), "S_churn": float(S_churn), "S_min": float(S_min), "S_max": float(S_max),
            "S_noise": float(S_noise)}
    if (img_channels := int(net.img_channels)) not in (1, 3):
        raise ConfigError(f"generate writes PNG images, which need 1 or 3 channels, not {img_channels}",
                          hint="sample such a network with sidbench.nets.sampler directly")
    if sampler == "heun" and num_steps < 2:
        raise ConfigError(f"--steps {num_steps} is too few for the Heun sampler", hint="use 2 or more steps")
    nfe = heun_nfe(num_steps) if sampler == "heun" else 1

    out = Path(out)
    zip_mode = out.suffix.lower() == ".zip"
    folder = Path(f"{out}.partial") if zip_mode else out
    manifest: dict[str, Any] = {
        "format": "sidbench.generate",
        "format_version": 1,
        "settings": _settings(net, sampler, device, class_idx, heun, sigma_init),
        "network": {"fingerprint": network_fingerprint(net), **(network_info or {})},
    }
    manifest = json.loads(json.dumps(manifest))  # compare as it will read back

    zip_seeds: set[int] = set()
    if zip_mode and out.exists():
        old, zip_seeds = _read_manifest_from_zip(out)
        if old is None:
            raise ConfigError(f"{out} exists and was not written by sidbench generate",
                              hint="use another --out")
        _check_same(old, manifest, out)
        if set(seeds) <= zip_seeds:
            if folder.is_dir():
                _check_same(_read_manifest_from(folder), manifest, folder)
                shutil.rmtree(folder)
            return GenerateSummary(out, 0, len(seeds), 0.0, nfe)

    old = _read_manifest_from(folder)
    if old is None and folder.is_dir() and imgio.done_seeds(folder, delete_bad=False):
        raise ConfigError(
            f"{folder} already holds PNGs but no {MANIFEST}, so their settings are unknown",
            hint="use another --out",
        )
    _check_same(old, manifest, folder)

    try:
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(folder)
        if zip_seeds:  # extending a finished zip: start from its images
            with zipfile.ZipFile(out) as zf:
                for s in sorted(zip_seeds):
                    target = folder / imgio.seed_filename(s)
                    if not target.exists():
                        with atomic_path(target) as tmp:
                            tmp.write_bytes(zf.read(imgio.seed_filename(s)))
        done = imgio.done_seeds(folder)
        manifest["seeds"] = format_seeds(sorted(done | set(seeds)))
        atomic_write_json(folder / MANIFEST, manifest)
    except OSError as exc:
        raise _disk_error(exc, f"{folder}", 0, len(seeds), folder) from exc

    pending = [s for s in seeds if s not in done]
    skipped = len(seeds) - len(pending)
    finished = skipped
    was_training = net.training
    net.eval()
    start = time.perf_counter()
    try:
        with make_progress() as bar, ThreadPoolExecutor(max(1, writers)) as pool:
            task = bar.add_task("generating", total=len(seeds), completed=skipped, visible=progress)
            writing: list[tuple[Path, Future]] = []

            def drain() -> None:
                """Wait for every write in flight, then report the first failure (none left running)."""
                nonlocal finished
                failure = None
                for path, future in writing:
                    try:
                        future.result()
                        finished += 1
                    except OSError as exc:
                        failure = failure or (path, exc)
                bar.advance(task, len(writing))
                writing.clear()
                if failure:
                    path, exc = failure
                    raise _disk_error(exc, str(path), finished, len(seeds), folder) from exc

            for lo in range(0, len(pending), batch_size):
                batch = pending[lo : lo + batch_size]
                uint8 = render_seeds(net, batch, sampler, device, class_idx, heun, sigma_init)
                drain()  # the previous batch's files, written while this one was sampled
                for seed, image in zip(batch, uint8, strict=True):
                    path = folder / imgio.seed_filename(seed)
                    writing.append((path, pool.submit(imgio.write_png, path, image)))
            drain()
    finally:
        net.train(was_training)
    seconds = time.perf_counter() - start

    if zip_mode:
        try:
            _pack_zip(folder, out, manifest)
        except OSError as exc:
            raise _disk_error(exc, str(out), finished, len(seeds), folder) from exc
        shutil.rmtree(folder)
    return GenerateSummary(out, len(pending), skipped, seconds, nfe)


@torch.no_grad()
def render_seeds(net: torch.nn.Module, seeds: Sequence[int], sampler: str = "heun",
                 device: str | torch.device = "cpu", class_idx: int | None = None,
                 heun: dict[str, Any] | None = None, sigma_init: float = 2.5) -> np.ndarray:
    """uint8 [B, C, H, W] numpy images for `seeds`, each from its own generator.

    The one place that turns seeds into images: `generate` writes them, and the metrics'
    on-the-fly generator source evaluates them without touching the disk.
    """
    shape = [net.img_channels, net.img_resolution, net.img_resolution]
    latents, labels, rng = latents_and_labels(seeds, shape, int(net.label_dim or 0), device, class_idx)
    if sampler == "heun":
        x = edm_sampler(net, latents, labels, randn_like=rng.randn_like, **(heun or {}))
    else:
        x = onestep_generate(net, latents, labels, sigma_init=sigma_init)
    return imgio.quantize(x).cpu().numpy()
