"""The embedded default suite end to end: the newcomer's first run.

It walks the same path as a big suite — a packaged teacher loaded from safetensors,
EDM Heun sampling with per-image seeds into a resumable PNG folder, feature extraction
and pinned protocols against shipped reference statistics, and one result record per
row — on scikit-learn's digits, so it finishes on a laptop CPU in minutes. Rows: the
teacher at its suite's Heun steps; the same teacher with only 2 Heun steps (3 NFE), the
few-step gap that distillation closes; then the teacher distilled into one-step
generators (NFE 1) with SiD and SiDA on the shared trainer, with the settings of
`recipes/sid-digits.yaml` and `recipes/sida-digits.yaml` (`DISTILL_RECIPES`, kept equal
to those files by tests/test_recipes.py).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidbench.fileio import atomic_write_text, sha256_file
from sidbench.jsonsafe import dumps
from sidbench.records import result_record
from sidbench.suites import get_suite

QUICKSTART_METRICS = ("fid", "is", "kid", "pr")
DISTILL_SUITE = "digits"


# The one-step rows: recipes/sid-digits.yaml and recipes/sida-digits.yaml, the same settings (a test
# keeps them equal). The papers' method settings; a training block scaled to a laptop: 100 steps of
# 32 images at lr 1e-4 (the papers: 1e-5, batches of 256 for hundreds of Mimg), EMA half-life 0.3 kimg;
# SiDA's hard-coded 100 / 200 kimg gates scaled likewise to 10 / 20 steps.
_NETWORK = {"optimizer": "adam", "lr": 1e-4, "betas": [0.0, 0.999], "eps": 1e-8, "weight_decay": 0.0,
            "grad_clip_value": None, "grad_clip_norm": None, "dropout": None, "warmup_kimg": 0}
_GENERATOR = {**_NETWORK, "ema_halflife_kimg": 0.3, "ema_rampup": None}
_TRAINING = {"seed": 0, "batch": 32, "batch_per_gpu": 32, "duration_kimg": 3.2, "precision": "fp32",
             "teacher": None, "dataset": None, "init_generator": None, "nan_guard": 10,
             "checkpoint_kimg": 0.8, "eval_kimg": None, "log_every_kimg": 0.16, "tensorboard": False}
_SID = {"sigma_init": 2.5, "alpha": 1.2, "tmax": 800, "loss_scale": 100.0, "fake_loss_scale": 1.0,
        "augment_p": 0.0}
DISTILL_RECIPES: dict[str, dict[str, Any]] = {
    "sid": {"name": "sid-digits", "suite": DISTILL_SUITE, "method": "sid", "method_settings": _SID,
            "training": {**_TRAINING, "networks": {"generator": _GENERATOR, "fake_score": _NETWORK}}},
    "sida": {"name": "sida-digits", "suite": DISTILL_SUITE, "method": "sida",
             "method_settings": {**_SID, "alpha": 1.0, "gan_scale": 0.01, "disc_scale": 1.0,
                                 "generator_start_kimg": 0.32, "gan_start_kimg": 0.64},
             "training": {**_TRAINING, "networks": {"generator": _GENERATOR,
                                                    "fake_score": {**_NETWORK, "grad_clip_value": 1.0}}}},
}


@dataclass(frozen=True)
class Row:
    label: str
    num_steps: int  # Heun steps; 0 for a one-step generator
    method: str = "teacher-heun"


def quickstart(out_dir: str | os.PathLike = "runs/quickstart", *, suite: str = "digits",
               num_images: int = 2000, batch_size: int = 250, device: str = "cpu", few_steps: int = 2,
               distill: bool = True, progress: bool = True) -> dict[str, Any]:
    """Generate with the suite's shipped teacher (and, with `distill`, SiD's and SiDA's one-step
    generators distilled from it), evaluate each row, write `results.json`.

    Resumable: rerunning the same command reuses finished images and finished training runs.
    """
    from sidbench.data.digits import DigitsDataset
    from sidbench.environment import environment
    from sidbench.metrics.evaluate import evaluate
    from sidbench.nets.native import load_network, read_network_record
    from sidbench.nets.seeds import format_seeds
    from sidbench.suites.resolve import resolve_suite

    s = get_suite(suite)
    if s.teacher.packaged is None:
        from sidbench.errors import ConfigError

        raise ConfigError(f"suite '{suite}' has no packaged teacher; quickstart runs embedded suites only",
                          hint="use `sidbench quickstart --suite digits`")
    assets = resolve_suite(s.name, need=("teacher", "ref_stats"))
    teacher_dir, ref_path = Path(assets.teacher), Path(assets.ref_stats)
    out = Path(out_dir)
    net = load_network(teacher_dir, device=device)
    teacher_sha = read_network_record(teacher_dir)["weights_sha256"]  # load_network checked it
    seeds = list(range(num_images))
    reference = DigitsDataset(resolution=s.resolution)

    rows = [Row(f"teacher heun-{s.teacher.heun_steps}", s.teacher.heun_steps),
            Row(f"teacher heun-{few_steps}", few_steps)]
    if distill and s.name == DISTILL_SUITE:
        rows += [Row(f"{m} one-step", 0, method=m) for m in DISTILL_RECIPES]
    env = {**environment(), "device": device, "processes": 1}
    records = []
    for row in rows:
        if row.method == "teacher-heun":
            images = out / f"heun{row.num_steps}"
            made = _teacher_images(net, images, seeds, row, s, batch_size, device, teacher_sha, progress)
        else:
            images = out / row.method / "images"
            made = _distilled_images(row.method, out / row.method, images, seeds, batch_size, device,
                                     progress)
        t1 = time.perf_counter()
        result = evaluate(images, ref=str(ref_path), ref_images=reference, metrics=QUICKSTART_METRICS,
                          protocols=list(s.protocols), batch_size=batch_size, device=device)
        t2 = time.perf_counter()
        summary = made["summary"]
        records.append(result_record(
            suite={"name": s.name, "version": s.version},
            method={**made["method"], "nfe": summary.nfe, "label": row.label,
                    "role": "teacher" if row.method == "teacher-heun" else "generator"},
            metrics=result["metrics"],
            networks={"teacher_sha256": teacher_sha, "reference_stats_sha256": sha256_file(ref_path),
                      **made.get("networks", {})},
            environment=env,
            cost={**made.get("cost", {}), "generate_seconds": made["generate_seconds"],
                  "evaluate_seconds": round(t2 - t1, 2), "images_generated_now": summary.written,
                  "images_reused": summary.skipped},
            extra={"seeds": format_seeds(seeds), "images": str(images)},
        ))
    report = {"suite": s.name, "records": records}
    atomic_write_text(out / "results.json", dumps(report) + "\n")
    return report


def _teacher_images(net: Any, images: Path, seeds: list[int], row: Row, s: Any, batch_size: int, device: str,
                    teacher_sha: str, progress: bool) -> dict[str, Any]:
    from sidbench.generation import generate

    t0 = time.perf_counter()
    summary = generate(net, images, seeds, batch_size=batch_size, num_steps=row.num_steps, device=device,
                       sigma_min=s.teacher.sigma_min, sigma_max=s.teacher.sigma_max, rho=s.teacher.rho,
                       network_info={"weights_sha256": teacher_sha}, progress=progress)
    return {"summary": summary, "generate_seconds": round(time.perf_counter() - t0, 2),
            "method": {"name": "teacher-heun", "version": "1", "num_steps": row.num_steps}}


def _distilled_images(method: str, run_dir: Path, images: Path, seeds: list[int], batch_size: int,
                      device: str, progress: bool) -> dict[str, Any]:
    """Distil (or resume: a finished run is only reloaded), then one PNG per seed from the EMA generator."""
    from sidbench.generation import generate
    from sidbench.nets.native import load_network, read_network_record
    from sidbench.train.config import load_recipe
    from sidbench.train.run import train

    config = load_recipe(DISTILL_RECIPES[method])
    t0 = time.perf_counter()
    run = train(config, run_dir / "run", resume="auto", progress=progress, device=device)
    t1 = time.perf_counter()
    record = read_network_record(run.product)
    generator = load_network(run.product, device=device)
    summary = generate(generator, images, seeds, batch_size=batch_size, sampler="onestep",
                       sigma_init=float(record["sigma_init"]), device=device,
                       network_info={"weights_sha256": record["weights_sha256"], "role": record.get("role")},
                       progress=progress)
    m = config.get_method()
    return {"summary": summary, "generate_seconds": round(time.perf_counter() - t1, 2),
            "method": {"name": m.name, "version": m.version, "num_steps": 1, "kimg": run.kimg,
                       "config_hash": run.config_hash, "recipe": f"recipes/{config.name}.yaml"},
            "networks": {"generator_sha256": record["weights_sha256"], "checkpoint": str(run.checkpoint)},
            "cost": {"train_seconds": round(t1 - t0, 2), "train_seconds_total": run.wall_time_s}}


def summary_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per record: the numbers a person looks at first."""
    rows = []
    for rec in report["records"]:
        m = rec["metrics"]
        rows.append({
            "row": rec["method"]["label"], "NFE": rec["method"]["nfe"],
            "FD": m["fid"]["value"], "IS": m["is"]["value"], "KID": m["kid"]["value"],
            "precision": m["precision"]["value"], "recall": m["recall"]["value"],
            "seconds": rec["cost"].get("train_seconds", 0.0) + rec["cost"]["generate_seconds"]
            + rec["cost"]["evaluate_seconds"],
        })
    return rows
