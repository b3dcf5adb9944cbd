"""The embedded default suite end to end: the newcomer's first run.

It walks the same path as a big suite — a packaged teacher loaded from safetensors,
EDM Heun sampling with per-image seeds into a resumable PNG folder, feature extraction
and pinned protocols against shipped reference statistics, and one result record per
row — on scikit-learn's digits, so it finishes on a laptop CPU in minutes. Two rows
are measured: the teacher at its suite's Heun steps, and the same teacher with only
2 Heun steps (3 NFE), the few-step gap that distillation methods exist to close.
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


@dataclass(frozen=True)
class Row:
    label: str
    num_steps: int


def quickstart(out_dir: str | os.PathLike = "runs/quickstart", *, suite: str = "digits",
               num_images: int = 2000, batch_size: int = 250, device: str = "cpu", few_steps: int = 2,
               progress: bool = True) -> dict[str, Any]:
    """Generate with the suite's shipped teacher, evaluate each row, write `results.json`.

    Resumable: rerunning the same command reuses finished images.
    """
    from sidbench.data.digits import DigitsDataset
    from sidbench.environment import environment
    from sidbench.generation import generate
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
    records = []
    for row in rows:
        images = out / f"heun{row.num_steps}"
        t0 = time.perf_counter()
        summary = generate(net, images, seeds, batch_size=batch_size, num_steps=row.num_steps, device=device,
                           sigma_min=s.teacher.sigma_min, sigma_max=s.teacher.sigma_max, rho=s.teacher.rho,
                           network_info={"weights_sha256": teacher_sha}, progress=progress)
        t1 = time.perf_counter()
        result = evaluate(images, ref=str(ref_path), ref_images=reference, metrics=QUICKSTART_METRICS,
                          protocols=list(s.protocols), batch_size=batch_size, device=device)
        t2 = time.perf_counter()
        records.append(result_record(
            suite={"name": s.name, "version": s.version},
            method={"name": "teacher-heun", "version": "1", "num_steps": row.num_steps, "nfe": summary.nfe,
                    "label": row.label},
            metrics=result["metrics"],
            networks={"teacher_sha256": teacher_sha, "reference_stats_sha256": sha256_file(ref_path)},
            environment={**environment(), "device": device, "processes": 1},
            cost={"generate_seconds": round(t1 - t0, 2), "evaluate_seconds": round(t2 - t1, 2),
                  "images_generated_now": summary.written, "images_reused": summary.skipped},
            extra={"seeds": format_seeds(seeds), "images": str(images)},
        ))
    report = {"suite": s.name, "records": records}
    atomic_write_text(out / "results.json", dumps(report) + "\n")
    return report


def summary_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per record: the numbers a person looks at first."""
    rows = []
    for rec in report["records"]:
        m = rec["metrics"]
        rows.append({
            "row": rec["method"]["label"], "NFE": rec["method"]["nfe"],
            "FD": m["fid"]["value"], "IS": m["is"]["value"], "KID": m["kid"]["value"],
            "precision": m["precision"]["value"], "recall": m["recall"]["value"],
            "seconds": rec["cost"]["generate_seconds"] + rec["cost"]["evaluate_seconds"],
        })
    return rows
