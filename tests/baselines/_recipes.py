"""A baseline recipe cut to two steps of 4 images, and the loss terms its run logged (not a test module)."""

from __future__ import annotations

import json
import math
from pathlib import Path


def short_run(recipe: Path, tmp_path: Path, *overrides: str):
    from sidbench.train import load_recipe, train

    cfg = load_recipe(recipe, ["training.batch=4", "training.batch_per_gpu=4", "training.duration_kimg=0.008",
                               "training.checkpoint_kimg=0.008", "training.log_every_kimg=0.004", *overrides])
    return train(cfg, tmp_path / "run", progress=False)


def finite_terms(run) -> dict:
    """Every logged loss term of the run, each checked finite."""
    rows = [json.loads(line) for line in (run.outdir / "log.jsonl").read_text().splitlines()]
    terms = {k: v for row in rows for k, v in row["terms"].items()}
    assert terms and all(math.isfinite(v) for v in terms.values()), terms
    return terms
