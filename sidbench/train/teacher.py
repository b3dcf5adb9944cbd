"""A plain, small training loop for the teachers of the embedded suites (digits, toy2d).

Adam with a linear learning-rate warm-up, EDM's denoising loss, an EMA of the
weights, one process. It exists so that the shipped teachers can be rebuilt by
anyone from a seed; the distillation methods use the shared trainer instead.
Reproducible: the network init uses `torch.manual_seed(seed)`, and batches and
noise come from explicit generators seeded from `seed`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidbench.errors import ConfigError
from sidbench.fileio import atomic_write_json
from sidbench.train.edm_loss import edm_loss
from sidbench.train.ema import EMA


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

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


class TensorSource(BatchSource):
    """A whole small dataset held in memory; batches drawn uniformly with replacement."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, label_dim: int):
        self.images = images
        self.labels = labels
        self.label_dim = label_dim

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
    if cfg["kimg"] <= 0 or cfg["batch_size"] < 1 or cfg["lr"] <= 0:
        raise ConfigError(f"kimg, batch and lr must be positive (got {cfg['kimg']}, {cfg['batch_size']}, "
                          f"{cfg['lr']})", hint="e.g. --kimg 100 --batch 32 --lr 1e-3")
    net_cfg = {"class_name": net_cfg["class_name"],
               "init_kwargs": {**net_cfg["init_kwargs"], **net_overrides}}
    device = torch.device(device)
    batch = int(cfg["batch_size"])
    total_nimg = int(round(cfg["kimg"] * 1000))
    steps = max(1, math.ceil(total_nimg / batch))

    torch.manual_seed(seed)
    net = build_network(net_cfg).to(device).train()
    ema = EMA(net, cfg["ema_halflife_kimg"], cfg["ema_rampup"])
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"], betas=(0.9, 0.999), eps=1e-8)
    data_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device).manual_seed(seed + 1)
    source = _SOURCES[suite_name]()
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
