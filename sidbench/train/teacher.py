"""A plain, small training loop for the teachers of the embedded suites (digits, toy2d).

Adam with a linear learning-rate warm-up, EDM's denoising loss, an EMA of the
weights, one process. It exists so that the shipped teachers can be rebuilt by
anyone from a seed; the distillation methods use the shared trainer instead.
Reproducible: the network init uses `torch.manual_seed(seed)`, and batches and
noise come from explicit generators seeded from `seed`.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidbench.devices import parse_device
from sidbench.errors import ConfigError
from sidbench.fileio import atomic_write_json
from sidbench.train.edm_loss import edm_loss
from sidbench.train.ema import EMA
from sidbench.train.memory import available_memory, estimate_training_memory, gigabytes


@dataclass
class TrainSummary:
    suite: str
    out_dir: str
    network_json: str
    kimg: float
    steps: int
    batch_size: int
    lr: float
    seed: int
    device: str
    threads: int
    wall_time_s: float
    loss_first: float  # mean per-element weighted loss over the first window of steps
    loss_last: float  # ... and over the last window
    loss_curve: list[list[float]] = field(default_factory=list)  # [kimg, window mean loss]
    config: dict[str, Any] = field(default_factory=dict)


class BatchSource:
    """Draws training batches (images in [-1, 1], one-hot labels or None) from a generator."""

    label_dim: int = 0
    num_images: int | None = None  # images in a finite dataset; None when data are drawn fresh

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


class TensorSource(BatchSource):
    """A whole small dataset held in memory; batches drawn uniformly with replacement."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, label_dim: int):
        self.images = images
        self.labels = labels
        self.label_dim = label_dim
        self.num_images = len(images)

    def sample(self, batch, generator):
        idx = torch.randint(len(self.images), [batch], generator=generator)
        labels = None
        if self.labels is not None and self.label_dim:
            labels = torch.nn.functional.one_hot(self.labels[idx], self.label_dim).to(torch.float32)
        return self.images[idx], labels


class MixtureSource(BatchSource):
    """Fresh points from the toy2d mixture every batch (infinite data), as [B, 2, 1, 1]."""

    def __init__(self, mixture: Any):
        self.mixture = mixture

    def sample(self, batch, generator):
        points = self.mixture.sample(batch, generator=generator)
        return points.to(torch.float32).reshape(batch, 2, 1, 1), None


def digits_source(resolution: int = 16) -> TensorSource:
    from sidbench.data.digits import DigitsDataset

    ds = DigitsDataset(resolution=resolution)
    images, labels = ds.arrays()  # all images in file order (read-only views: torch.tensor copies)
    x = torch.tensor(images, dtype=torch.float32) / 127.5 - 1.0
    return TensorSource(x, torch.tensor(labels), ds.label_dim)


def toy2d_source() -> MixtureSource:
    from sidbench.suites.toy2d import make_mixture

    return MixtureSource(make_mixture())


_SOURCES = {"digits": digits_source, "toy2d": toy2d_source}


def _suite_training(suite_name: str) -> tuple[Any, dict, dict]:
    from sidbench.suites.base import get_suite

    suite = get_suite(suite_name)
    net_cfg = suite.settings.get("teacher_network")
    train_cfg = suite.settings.get("teacher_training")
    if suite_name not in _SOURCES or net_cfg is None or train_cfg is None:
        raise ConfigError(f"suite '{suite_name}' has no teacher that sidbench trains",
                          hint=f"train-teacher supports the embedded suites: {', '.join(sorted(_SOURCES))}")
    return suite, net_cfg, dict(train_cfg)


def _window_means(values: list[float], windows: int) -> list[tuple[int, float]]:
    """(end step, mean) over `windows` equal consecutive chunks of `values`."""
    n = len(values)
    if n == 0:
        return []
    edges = np.linspace(0, n, min(windows, n) + 1).round().astype(int)
    pairs = zip(edges[:-1], edges[1:], strict=True)
    return [(int(b), float(np.mean(values[a:b]))) for a, b in pairs if b > a]


# setting -> (lowest allowed, whether the lowest is allowed, highest allowed or None, example)
_RANGES: dict[str, tuple[float, bool, float | None, str]] = {
    "kimg": (0.0, False, None, "--kimg 100"),
    "lr": (0.0, False, None, "--lr 1e-3"),
    "lr_rampup_kimg": (0.0, True, None, "lr_rampup_kimg=5"),
    "ema_halflife_kimg": (0.0, False, None, "ema_halflife_kimg=10"),
    "ema_rampup": (0.0, True, None, "ema_rampup=0.05"),
    "label_dropout": (0.0, True, 1.0, "label_dropout=0.1"),
    "P_mean": (-math.inf, False, None, "P_mean=-1.2"),
    "P_std": (0.0, False, None, "P_std=1.2"),
}


def _check_settings(cfg: dict[str, Any], seed: int) -> None:
    """One-line ConfigError for a setting that is not a finite number in its range (NaN, inf, <= 0, ...)."""
    batch = cfg["batch_size"]
    if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1:
        raise ConfigError(f"batch size must be a positive whole number, got {batch!r}",
                          hint="e.g. --batch 32")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed must be a whole number in [0, 2**63), got {seed!r}", hint="e.g. --seed 0")
    for key, (low, low_ok, high, example) in _RANGES.items():
        value = cfg.get(key)
        if key == "ema_rampup" and value is None:
            continue  # no ramp-up
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        if ok:
            ok = (value >= low if low_ok else value > low) and (high is None or value < high)
        if not ok:
            bound = f">= {low:g}" if low_ok else f"> {low:g}"
            need = "a finite number" + ("" if low == -math.inf else f" {bound}") + \
                ("" if high is None else f" and < {high:g}")
            raise ConfigError(f"teacher-training setting {key} must be {need}, got {value!r}",
                              hint=f"e.g. {example}")


def _check_batch_size(source: BatchSource, batch: int, suite_name: str, default_batch: int) -> None:
    """Refuse a batch larger than a finite dataset: sampling with replacement would only repeat images."""
    if source.num_images is not None and batch > source.num_images:
        raise ConfigError(f"batch {batch:,} is larger than the {suite_name} dataset ({source.num_images:,} "
                          "images): every batch would repeat images",
                          hint=f"use --batch {source.num_images} or less "
                               f"(the suite's default is {default_batch})")


def _check_memory(net: torch.nn.Module, source: BatchSource, batch: int, cfg: dict[str, Any],
                  device: torch.device, default_batch: int) -> None:
    """Refuse a batch whose activations alone cannot fit in the memory `device` has free."""
    available = available_memory(device)
    if available is None:
        return

    def run(b: int) -> torch.Tensor:
        images, labels = source.sample(b, torch.Generator().manual_seed(0))
        images = images.to(device)
        labels = labels.to(device) if labels is not None else None
        return edm_loss(net, images, labels, generator=torch.Generator(device).manual_seed(0),
                        P_mean=cfg["P_mean"], P_std=cfg["P_std"], label_dropout=cfg["label_dropout"])

    estimate = estimate_training_memory(net, run, device)
    need = estimate.total(batch)
    if need > available:
        raise ConfigError(
            f"batch {batch:,} needs at least {gigabytes(need)} on {device} "
            f"({gigabytes(estimate.per_image_bytes)} of activations per image), more than the "
            f"{gigabytes(available)} available",
            hint=f"use a smaller --batch (at most about {estimate.max_batch(available):,} fit now; "
                 f"the suite's default is {default_batch})")


def train_teacher(suite_name: str, out_dir: str | os.PathLike, *, kimg: float | None = None,
                  batch_size: int | None = None, lr: float | None = None, seed: int = 0,
                  device: str | torch.device = "cpu", progress: bool = True,
                  overrides: dict[str, Any] | None = None) -> TrainSummary:
    """Train the suite's teacher from scratch and save its EMA as a native network folder in `out_dir`.

    `kimg`, `batch_size`, `lr` default to the suite's `teacher_training` settings;
    `overrides` replaces any other key of those settings (or of the network's
    init_kwargs under the key "network"). Writes `network.json`, `network.safetensors`
    and `training.json` (settings, loss curve, wall time).
    """
    from sidbench.nets.build import build_network
    from sidbench.nets.native import save_network
    from sidbench.progress import make_progress

    _suite, net_cfg, cfg = _suite_training(suite_name)
    default_batch = cfg["batch_size"]
    overrides = dict(overrides or {})
    net_overrides = overrides.pop("network", {})
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ConfigError(f"unknown teacher-training setting(s): {', '.join(sorted(unknown))}",
                          hint=f"valid: {', '.join(sorted(cfg))}")
    cfg.update(overrides)
    for key, value in (("kimg", kimg), ("batch_size", batch_size), ("lr", lr)):
        if value is not None:
            cfg[key] = value
    _check_settings(cfg, seed)
    net_cfg = {"class_name": net_cfg["class_name"],
               "init_kwargs": {**net_cfg["init_kwargs"], **net_overrides}}
    device = parse_device(device)
    batch = int(cfg["batch_size"])
    total_nimg = int(round(cfg["kimg"] * 1000))
    steps = max(1, math.ceil(total_nimg / batch))

    source = _SOURCES[suite_name]()  # draws no random numbers: the seeded state below is unchanged
    _check_batch_size(source, batch, suite_name, default_batch)

    torch.manual_seed(seed)
    net = build_network(net_cfg).to(device).train()
    _check_memory(net, source, batch, cfg, device, default_batch)  # restores every RNG it touches
    ema = EMA(net, cfg["ema_halflife_kimg"], cfg["ema_rampup"])
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"], betas=(0.9, 0.999), eps=1e-8)
    data_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device).manual_seed(seed + 1)
    rampup_nimg = max(cfg["lr_rampup_kimg"] * 1000, 1e-8)

    losses: list[float] = []
    cur_nimg = 0
    start = time.perf_counter()
    with make_progress() as bar:
        task = bar.add_task(f"train {suite_name} teacher", total=steps, visible=progress)
        for _step in range(steps):
            images, labels = source.sample(batch, data_gen)
            images = images.to(device)
            labels = labels.to(device) if labels is not None else None
            loss = edm_loss(net, images, labels, generator=noise_gen, P_mean=cfg["P_mean"],
                            P_std=cfg["P_std"], label_dropout=cfg["label_dropout"])
            opt.zero_grad(set_to_none=True)
            loss.sum().div(batch).backward()
            for group in opt.param_groups:
                group["lr"] = cfg["lr"] * min(cur_nimg / rampup_nimg, 1.0)
            for p in net.parameters():
                if p.grad is not None:
                    torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
            opt.step()
            cur_nimg += batch
            ema.update(net, cur_nimg, batch)
            losses.append(float(loss.detach().mean()))
            bar.advance(task)
    wall = time.perf_counter() - start

    out = Path(out_dir)
    source_info = {"trained_by": "sidbench train-teacher", "suite": suite_name, "seed": seed,
                   "kimg": cur_nimg / 1000}
    json_path = save_network(ema.net, net_cfg, out, source=source_info)
    window = max(1, min(50, steps // 10))
    curve = [[round((end * batch) / 1000, 3), mean] for end, mean in _window_means(losses, 20)]
    summary = TrainSummary(
        suite=suite_name, out_dir=str(out), network_json=str(json_path), kimg=cur_nimg / 1000, steps=steps,
        batch_size=batch, lr=float(cfg["lr"]), seed=seed, device=str(device), threads=torch.get_num_threads(),
        wall_time_s=round(wall, 3), loss_first=float(np.mean(losses[:window])),
        loss_last=float(np.mean(losses[-window:])), loss_curve=curve,
        config={"training": cfg, "network": net_cfg},
    )
    atomic_write_json(out / "training.json", asdict(summary))
    return summary
