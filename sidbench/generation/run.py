"""`generate`: check everything, take the output's lock, then make only the images still missing.

`write_images` is the part every generator shares (EDM networks here, text-to-image ones in
`sidbench.generation.t2i`): a render function seeds -> uint8 images, a manifest, and the
lock / resume / zip logic below.

Order matters: every setting (seeds, sampler numbers, batch size, device, weights)
is checked before anything is written, so a bad option never leaves a folder
behind. A folder left by a crashed run that holds a manifest but no finished image
does not block a corrected rerun; one holding images made otherwise is refused.
"""

from __future__ import annotations

import math
import numbers
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidbench import images as imgio
from sidbench.devices import parse_device
from sidbench.errors import ConfigError
from sidbench.generation import zipout
from sidbench.generation.lock import output_lock
from sidbench.generation.manifest import (
    MANIFEST,
    build_manifest,
    differences,
    read_manifest,
    with_seeds,
    write_manifest,
)
from sidbench.generation.multistep import render_multistep
from sidbench.generation.summary import GenerateSummary
from sidbench.generation.writer import PngWriter, disk_error
from sidbench.nets.native import check_student_sigmas
from sidbench.nets.render import check_finite_weights, render_seeds
from sidbench.nets.sampler import check_sampler_settings, heun_nfe
from sidbench.nets.seeds import check_class_idx, parse_seeds
from sidbench.progress import make_progress

Render = Callable[[list[int]], "np.ndarray | torch.Tensor"]  # seeds -> uint8 [B, C, H, W]


def _positive_int(name: str, value: Any, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} {value!r} must be a whole number >= 1", hint=hint)
    return int(value)


def _refuse_other_settings(where: Path, diffs: list[str], images: int) -> ConfigError:
    return ConfigError(
        f"{where} holds {images} images made with other settings ({'; '.join(diffs)})",
        hint=f"pass another --out, or delete {where}; to resume, use the same network and settings",
    )


def _check_folder(folder: Path, manifest: dict[str, Any]) -> None:
    """May `folder` receive images made as `manifest` says? Only its finished images matter."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} exists and is not a folder", hint="pass another --out, or delete it")
    old = read_manifest(folder)
    images = imgio.done_seeds(folder, delete_bad=False)
    if old is None:
        if images:
            raise ConfigError(f"{folder} already holds PNGs but no {MANIFEST}, so their settings are unknown",
                              hint="pass another --out")
        return
    diffs = differences(old, manifest)
    if diffs and images:
        raise _refuse_other_settings(folder, diffs, len(images))


def _remove_stale_temps(folder: Path) -> None:
    """Delete temporary files a killed run left behind (safe: we hold the lock)."""
    for entry in os.scandir(folder):
        if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file():
            Path(entry.path).unlink(missing_ok=True)


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
    student_sigmas: Sequence[float] | None = None,
) -> GenerateSummary:
    """Write `{seed:06d}.png` for every seed into `out` (a folder, or a path ending in .zip).

    `net` must already be on `device`; it is run in eval mode. Seeds already written
    (and decodable) are skipped. `network_info` (e.g. the network.json fields) is
    stored in the manifest for the record; the weights themselves are fingerprinted.
    PNGs are encoded and written by `writers` threads while the next batch is sampled.
    Only one process may write an output at a time (`OUT.lock`). `student_sigmas` (one-step
    sampler only): sample a multi-step student at these levels (`sidbench.generation.multistep`).
    """
    seeds = parse_seeds(seeds)
    settings = check_sampler_settings(num_steps, sigma_min, sigma_max, rho, S_churn, S_min, S_max, S_noise,
                                      sigma_init, sampler=sampler)
    batch_size = _positive_int("batch size", batch_size, "use e.g. --batch-size 64")
    writers = _positive_int("writers", writers, "use e.g. 4 writer threads")
    levels = None
    if student_sigmas is not None:
        levels = check_student_sigmas(student_sigmas)
        if sampler != "onestep":
            raise ConfigError("student_sigmas sample a one-step student, not the heun sampler",
                              hint="use sampler onestep with student_sigmas")
    device = parse_device(device)
    _check_network(net, device, class_idx)
    if Path(out).suffix.lower() == ".zip" and Path(out).is_dir():
        raise ConfigError(f"{out} is a folder, not a zip", hint="pass another --out")
    manifest = build_manifest(net, sampler, device, class_idx, settings, network_info, student_sigmas=levels)
    nfe = heun_nfe(settings["num_steps"]) if sampler == "heun" else len(levels or (1,))
    heun = {k: v for k, v in settings.items() if k != "sigma_init"}

    def render(batch: list[int]) -> np.ndarray | torch.Tensor:
        if levels is not None:
            return render_multistep(net, batch, device, class_idx, levels)
        return render_seeds(net, batch, sampler, device, class_idx, heun, settings["sigma_init"])

    was_training = net.training
    net.eval()
    try:
        return write_images(render, out, seeds, manifest, batch_size=batch_size, writers=writers,
                            progress=progress, nfe=nfe)
    finally:
        net.train(was_training)


def write_images(render: Render, out: str | os.PathLike, seeds: Sequence[int], manifest: dict[str, Any], *,
                 batch_size: int = 64, writers: int = 4, progress: bool = True,
                 nfe: int = 1) -> GenerateSummary:
    """The resumable writer behind every generator: `render(seeds)` -> uint8 [B, C, H, W] images.

    `manifest` (from `build_manifest` or `build_t2i_manifest`, without seeds) says how the images
    are made; an output made otherwise is refused, one made the same way is resumed or extended.
    `render` must make image s from seed s alone, so batching never changes an image.
    """
    seeds = parse_seeds(seeds)
    batch_size = _positive_int("batch size", batch_size, "use e.g. --batch-size 64")
    writers = _positive_int("writers", writers, "use e.g. 4 writer threads")
    out = Path(out)
    zip_mode = out.suffix.lower() == ".zip"
    if zip_mode and out.is_dir():
        raise ConfigError(f"{out} is a folder, not a zip", hint="pass another --out")
    with output_lock(out):
        folder = zipout.staging_folder(out) if zip_mode else out
        old_zip = _check_old_zip(out, manifest) if zip_mode and out.exists() else None
        _check_folder(folder, manifest)
        done = _open_folder(folder, manifest, old_zip, out, len(seeds))
        pending = [s for s in seeds if s not in done]
        seconds = _render_and_write(render, folder, pending, len(seeds), batch_size, writers, progress)
        finished = done | set(pending)
        try:
            if zip_mode:
                _close_zip(folder, out, manifest, old_zip, finished, seeds, len(pending))
            else:
                write_manifest(folder, with_seeds(manifest, finished))
        except OSError as exc:
            raise disk_error(exc, str(out), len(finished), len(seeds), folder) from exc
    return GenerateSummary(out, len(pending), len(seeds) - len(pending), seconds, nfe)


def _check_network(net: torch.nn.Module, device: torch.device, class_idx: int | None) -> None:
    """The network can make PNGs on `device`, for `class_idx`, from finite weights."""
    check_class_idx(class_idx, int(getattr(net, "label_dim", 0) or 0))
    params = list(net.parameters())
    if params and params[0].device.type != device.type:
        raise ConfigError(f"the network is on {params[0].device}, not {device}",
                          hint="move it with net.to(device)")
    if (img_channels := int(net.img_channels)) not in (1, 3):
        raise ConfigError(f"generate writes PNG images, which need 1 or 3 channels, not {img_channels}",
                          hint="sample such a network with sidbench.nets.sampler directly")
    check_finite_weights(net)


def _check_old_zip(out: Path, manifest: dict[str, Any]) -> zipout.ZipContents:
    """An existing zip may be extended only if generate wrote it, with these settings (or it has no image)."""
    old = zipout.read_zip(out)
    if old.manifest is None:
        raise ConfigError(f"{out} exists and was not written by sidbench generate", hint="pass another --out")
    if old.seeds and (diffs := differences(old.manifest, manifest)):
        raise _refuse_other_settings(out, diffs, len(old.seeds))
    return old


def _open_folder(folder: Path, manifest: dict[str, Any], old_zip: zipout.ZipContents | None, out: Path,
                 total: int) -> set[int]:
    """Make the folder ready (stale temps gone, a zip's images staged); the seeds already finished."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(folder)
        if old_zip is not None:
            zipout.stage_members(out, folder, old_zip.seeds)
        done = imgio.done_seeds(folder)  # deletes truncated PNGs, so they are made again
        write_manifest(folder, with_seeds(manifest, done))
    except OSError as exc:
        raise disk_error(exc, str(folder), 0, total, folder) from exc
    return done


def _close_zip(folder: Path, out: Path, manifest: dict[str, Any], old_zip: zipout.ZipContents | None,
               finished: set[int], seeds: list[int], written: int) -> None:
    """Pack the staged images into `out` (unless it holds exactly them already); drop the staging folder."""
    unchanged = (old_zip is not None and not written and finished == old_zip.seeds
                 and old_zip.manifest == with_seeds(manifest, finished))
    if not unchanged:
        packed = zipout.pack_zip(folder, out, manifest, keep_from=out if old_zip else None)
        if missing := set(seeds) - packed:
            raise ConfigError(f"{len(missing)} images vanished from {folder} before packing",
                              hint="rerun the same command to make them again")
    shutil.rmtree(folder)


def _render_and_write(render: Render, folder: Path, pending: list[int], total: int, batch_size: int,
                      writers: int, progress: bool) -> float:
    """Render `pending` batch by batch, writing each batch while the next is rendered; seconds taken."""
    finished = total - len(pending)
    start = time.perf_counter()
    with make_progress() as bar, PngWriter(writers) as writer:
        task = bar.add_task("generating", total=total, completed=finished, visible=progress)

        def drain() -> None:
            nonlocal finished
            ok, failure = writer.drain()
            finished += ok
            bar.advance(task, ok)
            if failure:
                path, exc = failure
                raise disk_error(exc, str(path), finished, total, folder) from exc

        for lo in range(0, len(pending), batch_size):
            batch = pending[lo : lo + batch_size]
            images = np.asarray(render(batch))
            if images.shape[0] != len(batch):
                raise ConfigError(f"the renderer returned {images.shape[0]} images for {len(batch)} seeds")
            drain()  # the previous batch's files, written while this one was rendered
            for seed, image in zip(batch, images, strict=True):
                writer.submit(folder / imgio.seed_filename(seed), image)
        drain()
    return time.perf_counter() - start
