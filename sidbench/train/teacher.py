"""The teachers of the embedded suites (digits, toy2d), trained by the shared trainer with the `edm` method.

`train_teacher` turns the suite's `teacher_training` settings into a run config (EDM's
denoising loss from scratch on the suite's architecture, Adam, linear learning-rate
warm-up, an EMA of the weights) and runs `sidbench.train.run.train` in `OUT/run/`, so a
teacher run is resumable and reproducible from its seed like any other run; the EMA is
then saved as a native network folder in `OUT` with a `training.json` summary. Rerunning
the same command resumes (or, when finished, only re-exports) that run.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from sidbench.errors import ConfigError
from sidbench.fileio import atomic_write_json

RUN_DIR = "run"


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
    loss_first: float  # mean per-element weighted loss over the first log window (1/20 of the run)
    loss_last: float  # ... and over the last one
    loss_curve: list[list[float]] = field(default_factory=list)  # [kimg, window mean loss]
    config: dict[str, Any] = field(default_factory=dict)


TRAINABLE_SUITES = ("digits", "toy2d", "digits-t2i")  # suites whose teacher sidbench trains here
# The teacher-training method's settings taken from a suite's `teacher_training`.
TEACHER_METHOD_SETTINGS = {"edm": ("P_mean", "P_std", "label_dropout"), "ddpm-t2i": ("prompt_dropout",)}
_SOURCES = TRAINABLE_SUITES  # the name sidbench.api's choices are checked against


def _suite_training(suite_name: str) -> tuple[Any, dict, dict]:
    from sidbench.suites.base import get_suite

    suite = get_suite(suite_name)
    net_cfg = suite.settings.get("teacher_network")
    train_cfg = suite.settings.get("teacher_training")
    if suite_name not in TRAINABLE_SUITES or net_cfg is None or train_cfg is None:
        raise ConfigError(f"suite '{suite_name}' has no teacher that sidbench trains",
                          hint=f"train-teacher supports the embedded suites: {', '.join(TRAINABLE_SUITES)}")
    return suite, net_cfg, dict(train_cfg)


# setting -> (lowest allowed, whether the lowest is allowed, highest allowed or None, example)
_RANGES: dict[str, tuple[float, bool, float | None, str]] = {
    "kimg": (0.0, False, None, "--kimg 100"),
    "lr": (0.0, False, None, "--lr 1e-3"),
    "lr_rampup_kimg": (0.0, True, None, "lr_rampup_kimg=5"),
    "ema_halflife_kimg": (0.0, False, None, "ema_halflife_kimg=10"),
    "ema_rampup": (0.0, True, None, "ema_rampup=0.05"),
    "label_dropout": (0.0, True, 1.0, "label_dropout=0.1"),
    "prompt_dropout": (0.0, True, 1.0, "prompt_dropout=0.1"),
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
        if key not in cfg:
            continue  # a setting of another teacher method
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




def _check_batch_size(batch: int, suite: Any, default_batch: int) -> None:
    """Refuse a batch larger than a finite dataset: every batch would repeat images."""
    n = suite.dataset.num_images
    if n and batch > n:
        raise ConfigError(f"batch {batch:,} is larger than the {suite.name} dataset ({n:,} images): "
                          "every batch would repeat images",
                          hint=f"use --batch {n} or less (the suite's default is {default_batch})")


def teacher_recipe(suite_name: str, cfg: dict[str, Any], net_cfg: dict, seed: int) -> dict[str, Any]:
    """The run config (a recipe mapping) of a teacher run with teacher-training settings `cfg`."""
    batch = int(cfg["batch_size"])
    steps = max(1, math.ceil(round(cfg["kimg"] * 1000, 6) / batch))
    from sidbench.suites.base import get_suite

    method = get_suite(suite_name).settings.get("teacher_method", "edm")
    keys = TEACHER_METHOD_SETTINGS[method]
    return {
        "name": f"teacher-{suite_name}",
        "suite": suite_name,
        "method": method,
        "method_settings": {k: cfg[k] for k in keys},
        "training": {
            "seed": seed, "batch": batch, "duration_kimg": cfg["kimg"], "architecture": net_cfg,
            "networks": {"denoiser": {"optimizer": "adam", "lr": cfg["lr"], "betas": [0.9, 0.999],
                                      "eps": 1e-8,
                                      "ema_halflife_kimg": cfg["ema_halflife_kimg"],
                                      "ema_rampup": cfg["ema_rampup"], "warmup_kimg": cfg["lr_rampup_kimg"]}},
            "checkpoint_kimg": cfg["kimg"] / 8,  # resumable after a kill
            "eval_kimg": None, "tensorboard": False,
            "log_every_kimg": steps * batch / 1000 / 20,  # 20 windows: the loss curve
        },
    }


def train_teacher(suite_name: str, out_dir: str | os.PathLike, *, kimg: float | None = None,
                  batch_size: int | None = None, lr: float | None = None, seed: int = 0,
                  device: str | torch.device = "cpu", progress: bool = True,
                  overrides: dict[str, Any] | None = None) -> TrainSummary:
    """Train the suite's teacher from scratch and save its EMA as a native network folder in `out_dir`.

    `kimg`, `batch_size`, `lr` default to the suite's `teacher_training` settings;
    `overrides` replaces any other key of those settings (or of the network's
    init_kwargs under the key "network"). Writes `network.json`, `network.safetensors`
    and `training.json` (settings, loss curve, wall time); the run itself is in `out_dir/run/`.
    """
    from sidbench.devices import parse_device
    from sidbench.nets.native import load_network, save_network
    from sidbench.train.checkpoint import read_state
    from sidbench.train.config import load_recipe
    from sidbench.train.memory import BatchTooLarge
    from sidbench.train.monitor import LOG, read_jsonl
    from sidbench.train.run import train

    suite, net_cfg, cfg = _suite_training(suite_name)
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
    dev = parse_device(device)
    batch = int(cfg["batch_size"])
    _check_batch_size(batch, suite, default_batch)
    config = load_recipe(teacher_recipe(suite_name, cfg, net_cfg, seed))

    out = Path(out_dir)
    try:
        result = train(config, out / RUN_DIR, resume="auto", progress=progress, device=dev)
    except BatchTooLarge as exc:
        raise ConfigError(exc.message, hint=f"use a smaller --batch (at most about {exc.fit:,} fit now; "
                                            f"the suite's default is {default_batch})") from None
    ema = load_network(result.product, device="cpu")
    source_info = {"trained_by": "sidbench train-teacher", "suite": suite_name, "seed": seed,
                   "kimg": result.kimg, "config_hash": result.config_hash}
    json_path = save_network(ema, net_cfg, out, source=source_info, role="teacher")

    rows = [r for r in read_jsonl(out / RUN_DIR / LOG) if "denoiser/loss" in r.get("terms", {})]
    c, h, w = ema.img_channels, ema.img_resolution, ema.img_resolution
    curve = [[round(r["kimg"], 3), r["terms"]["denoiser/loss"] / (c * h * w)] for r in rows]
    wall = float(read_state(result.checkpoint, verify=False).get("wall_time_s", 0.0))  # over every resume
    summary = TrainSummary(
        suite=suite_name, out_dir=str(out), network_json=str(json_path), kimg=result.kimg, steps=result.steps,
        batch_size=batch, lr=float(cfg["lr"]), seed=seed, device=str(dev), threads=torch.get_num_threads(),
        wall_time_s=round(wall, 3), loss_first=curve[0][1] if curve else math.nan,
        loss_last=curve[-1][1] if curve else math.nan, loss_curve=curve,
        config={"training": cfg, "network": net_cfg, "run": str(out / RUN_DIR),
                "config_hash": result.config_hash},
    )
    atomic_write_json(out / "training.json", asdict(summary))
    return summary
