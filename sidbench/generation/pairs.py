"""Teacher (noise, image) pairs: DMD's regression data, made per seed with EDM's Heun sampler, resumably.

Pair i is a function of seed i alone, with EDM's per-image seeds (`sidbench.nets.seeds`): its
latent z_i (and, for a conditional teacher, its class) come from seed i's own generator, its
noise is the Heun sampler's input x_0 = sigma_max * z_i, and its image is the sampler's output
from there (deterministic Heun, no churn). So pairs do not depend on the batch size (beyond the
last-bit rounding of batched kernels), and a run cut anywhere and resumed with the same settings
writes the same bytes as one that was never interrupted.

A pairs folder holds safetensors shards of `shard_size` pairs each (the seed list cut in order),
each with float32 `noise` [n, C, H, W], float32 `image` [n, C, H, W] (unclipped), int64 `seeds`
[n] and, for a conditional teacher, float32 one-hot `labels` [n, label_dim]; and `pairs.json`,
the manifest, rewritten atomically after every shard: settings, the teacher's fingerprint, the
seed list, and per shard its seeds and sha256. A shard is written to a temporary file and
renamed, so a killed run leaves whole shards only; a shard whose hash does not match is made
again. Nothing is ever unpickled: `read_pairs` loads safetensors only, after checking hashes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sidbench import jsonsafe
from sidbench.devices import parse_device
from sidbench.errors import AssetError, ConfigError
from sidbench.fileio import atomic_write_bytes, atomic_write_text, sha256_bytes, sha256_file
from sidbench.generation.lock import output_lock
from sidbench.generation.manifest import differences, network_fingerprint
from sidbench.nets.render import check_finite_output, check_finite_weights
from sidbench.nets.sampler import check_sampler_settings, edm_sampler, edm_time_steps, heun_nfe
from sidbench.nets.seeds import format_seeds, latents_and_labels, parse_seeds
from sidbench.progress import make_progress

MANIFEST = "pairs.json"
FORMAT = "sidbench.pairs"
FORMAT_VERSION = 1
_HEUN_KEYS = ("num_steps", "sigma_min", "sigma_max", "rho")
_REMAKE = "rerun the same `sidbench pairs` command to remake it"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


@dataclass(frozen=True)
class PairsSummary:
    """What a `make_pairs` call did."""

    out: Path
    written: int  # pairs made now
    skipped: int  # pairs already there
    shards: int
    seconds: float
    nfe: int

    def line(self) -> str:
        rate = self.written / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.written} pairs written, {self.skipped} already done, {self.shards} shards -> "
                f"{self.out} ({self.seconds:.1f} s, {rate:.3g} pairs/s, {self.nfe} NFE/pair)")


def _settings(net: torch.nn.Module, heun: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        "sampler": "heun",
        **{k: heun[k] for k in _HEUN_KEYS},
        "S_churn": 0.0,
        "image_shape": [int(net.img_channels), int(net.img_resolution), int(net.img_resolution)],
        "label_dim": int(getattr(net, "label_dim", 0) or 0),
        "device_type": device.type,
        "seed_convention": "edm StackedRandomGenerator: latent, class",
        "noise": "x_0 = t_0 * latent (t_0 = sigma_max after round_sigma): the Heun sampler's input",
        "image": "the Heun sampler's output, float32, unclipped",
    }


def _manifest(net: torch.nn.Module, heun: dict[str, Any], device: torch.device, seeds: Sequence[int],
              shard_size: int, network_info: dict | None) -> dict[str, Any]:
    body = {"format": FORMAT, "format_version": FORMAT_VERSION, "settings": _settings(net, heun, device),
            "network": {"fingerprint": network_fingerprint(net), **(network_info or {})},
            "seeds": format_seeds(list(seeds)), "num_pairs": len(seeds), "shard_size": int(shard_size),
            "shards": []}
    return json.loads(jsonsafe.dumps(body))


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(folder / MANIFEST, jsonsafe.dumps(manifest) + "\n")


def read_manifest(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of a pairs folder, None when it has none; a broken one is a one-line error."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    hint = f"delete {path.parent} or pass another --out"
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not a readable {FORMAT} manifest ({exc})", hint=hint) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a {FORMAT} manifest", hint=hint)
    if not isinstance(data.get("format_version"), int) or data["format_version"] > FORMAT_VERSION:
        raise ConfigError(f"{path} has format version {data.get('format_version')!r}, this sidbench reads "
                          f"{FORMAT_VERSION}", hint="upgrade sidbench, or make the pairs again")
    for key, kind in (("settings", dict), ("network", dict), ("shards", list), ("seeds", str)):
        if not isinstance(data.get(key), kind):
            raise ConfigError(f"{path}: '{key}' is missing or not a {kind.__name__}", hint=hint)
    return data


def _valid_shards(folder: Path, old: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Shards of `old` whose file is there with the recorded sha256 (index -> entry)."""
    done = {}
    for entry in old["shards"]:
        path = folder / str(entry.get("file", ""))
        if path.is_file() and sha256_file(path) == entry.get("sha256"):
            done[int(entry["index"])] = entry
    return done


def _check_folder(folder: Path, old: dict[str, Any] | None, new: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The finished shards a resume may keep; refuse a folder of other pairs."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} exists and is not a folder", hint="pass another --out, or delete it")
    if old is None:
        if folder.is_dir() and any(folder.glob("shard-*.safetensors")):
            raise ConfigError(f"{folder} holds shards but no {MANIFEST}, so their settings are unknown",
                              hint="pass another --out")
        return {}
    done = _valid_shards(folder, old)
    if not done:
        return {}
    diffs = differences(old, new)
    for key in ("seeds", "shard_size"):
        if old.get(key) != new.get(key):
            diffs.append(f"{key}: {str(old.get(key))[:40]} -> {str(new.get(key))[:40]}")
    if diffs:
        count = sum(int(e["count"]) for e in done.values())
        raise ConfigError(f"{folder} holds {count} pairs made with other settings ({'; '.join(diffs)})",
                          hint=f"pass another --out, or delete {folder}; to resume, use the same teacher, "
                               "seeds and settings")
    return done


@torch.no_grad()
def heun_pairs(net: torch.nn.Module, seeds: Sequence[int], device: torch.device, heun: dict[str, Any]
               ) -> dict[str, torch.Tensor]:
    """{noise, image, seeds[, labels]} of `seeds` on the CPU: EDM's per-seed latents through Heun."""
    shape = [int(net.img_channels), int(net.img_resolution), int(net.img_resolution)]
    label_dim = int(getattr(net, "label_dim", 0) or 0)
    latents, labels, rng = latents_and_labels(seeds, shape, label_dim, device)
    t0 = edm_time_steps(net, heun["num_steps"], heun["sigma_min"], heun["sigma_max"], heun["rho"],
                        device=latents.device)[0]
    image = edm_sampler(net, latents, labels, randn_like=rng.randn_like, **heun)
    check_finite_output(image, net, seeds, "heun", {**heun, "S_churn": 0.0})
    out = {"noise": (latents.to(torch.float64) * t0).to(torch.float32).cpu().contiguous(),
           "image": image.to(torch.float32).cpu().contiguous(),
           "seeds": torch.as_tensor(list(seeds), dtype=torch.int64)}
    if labels is not None:
        out["labels"] = labels.to(torch.float32).cpu().contiguous()
    return out


def _write_shard(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    from safetensors.torch import save

    data = save(tensors, metadata={"format": FORMAT})
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


def make_pairs(net: torch.nn.Module, out: str | os.PathLike, seeds: str | Sequence[int], *,
               num_steps: int = 18, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
               batch_size: int = 64, shard_size: int = 1000, device: str | torch.device = "cpu",
               network_info: dict | None = None, progress: bool = True) -> PairsSummary:
    """Write the pairs of `seeds` into folder `out` (see the module docstring); resumes a cut run.

    `net` (a teacher) must already be on `device`; it runs in eval mode. Only one process may write
    a folder at a time (`OUT.lock`).
    """
    seed_list = parse_seeds(seeds)
    settings = check_sampler_settings(num_steps, sigma_min, sigma_max, rho)
    heun = {k: settings[k] for k in _HEUN_KEYS}
    for name, value in (("batch size", batch_size), ("shard size", shard_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} {value!r} must be a whole number >= 1", hint="e.g. 64")
    device = parse_device(device)
    check_finite_weights(net)
    folder = Path(out)
    manifest = _manifest(net, heun, device, seed_list, shard_size, network_info)
    chunks = [seed_list[i:i + shard_size] for i in range(0, len(seed_list), shard_size)]
    was_training = net.training
    net.eval()
    start = time.perf_counter()
    written = skipped = 0
    try:
        with output_lock(folder):
            done = _check_folder(folder, read_manifest(folder), manifest)
            folder.mkdir(parents=True, exist_ok=True)
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
            entries = {i: e for i, e in done.items() if i < len(chunks)}
            manifest["shards"] = [entries[i] for i in sorted(entries)]
            _write_manifest(folder, manifest)
            skipped = sum(len(chunks[i]) for i in entries)
            with make_progress() as bar:
                task = bar.add_task("pairs", total=len(seed_list), completed=skipped, visible=progress)
                for index, chunk in enumerate(chunks):
                    if index in entries:
                        continue
                    parts = []
                    for lo in range(0, len(chunk), batch_size):
                        parts.append(heun_pairs(net, chunk[lo:lo + batch_size], device, heun))
                        bar.advance(task, len(parts[-1]["seeds"]))
                    tensors = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
                    name = shard_name(index)
                    digest = _write_shard(folder / name, tensors)
                    entries[index] = {"index": index, "file": name, "seeds": format_seeds(chunk),
                                      "count": len(chunk), "sha256": digest}
                    manifest["shards"] = [entries[i] for i in sorted(entries)]
                    _write_manifest(folder, manifest)
                    written += len(chunk)
    finally:
        net.train(was_training)
    return PairsSummary(folder, written, skipped, len(chunks), time.perf_counter() - start,
                        heun_nfe(heun["num_steps"]))


# --- reading ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairSet:
    """All pairs of a folder, on the CPU: noise [N,C,H,W] (the sampler's input), image, labels, seeds."""

    noise: torch.Tensor
    image: torch.Tensor
    labels: torch.Tensor | None
    seeds: torch.Tensor
    manifest: dict[str, Any]
    sha256: str  # of the manifest file: identifies the set

    def __len__(self) -> int:
        return int(self.seeds.shape[0])

    @property
    def sigma_max(self) -> float:
        return float(self.manifest["settings"]["sigma_max"])


def read_pairs(folder: str | os.PathLike) -> PairSet:
    """Load a complete pairs folder (every shard present with its recorded sha256; safetensors only)."""
    from safetensors.torch import load_file

    path = Path(folder).expanduser()
    manifest = read_manifest(path)
    if manifest is None:
        raise AssetError(f"{path} holds no {MANIFEST}: not a pairs folder",
                         hint="make one with `sidbench pairs --suite SUITE --num-pairs N --out DIR`")
    total = int(manifest.get("num_pairs", 0))
    have = sum(int(e.get("count", 0)) for e in manifest["shards"])
    if have != total or total == 0:
        raise AssetError(f"{path} holds {have} of {total} pairs: the run that makes them did not finish",
                         hint="rerun the same `sidbench pairs` command to complete it")
    parts = []
    for entry in manifest["shards"]:
        shard = path / str(entry["file"])
        if not shard.is_file():
            raise AssetError(f"{shard} is missing", hint=_REMAKE)
        if sha256_file(shard) != entry["sha256"]:
            raise AssetError(f"{shard}: sha256 does not match {MANIFEST}: the shard is corrupt or was "
                             "replaced", hint=_REMAKE)
        parts.append(load_file(str(shard), device="cpu"))
    keys = set(parts[0])
    labels = torch.cat([p["labels"] for p in parts]) if "labels" in keys else None
    shape = tuple(manifest["settings"]["image_shape"])
    noise, image = torch.cat([p["noise"] for p in parts]), torch.cat([p["image"] for p in parts])
    if tuple(noise.shape[1:]) != shape or noise.shape != image.shape or noise.shape[0] != total:
        raise AssetError(f"{path}: the shards hold {tuple(noise.shape)} noise and {tuple(image.shape)} "
                         f"images, the manifest says {total} x {shape}", hint="make the pairs again")
    return PairSet(noise=noise, image=image, labels=labels, seeds=torch.cat([p["seeds"] for p in parts]),
                   manifest=manifest, sha256=sha256_file(path / MANIFEST))


__all__ = ["MANIFEST", "PairSet", "PairsSummary", "heun_pairs", "make_pairs", "read_manifest", "read_pairs"]
