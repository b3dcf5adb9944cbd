"""A training run folder as a report reads it: config, evaluation records, cost, newest checkpoint.

A run folder is what `sidbench distill --outdir` (sidbench.train.run) writes: `config.json` (the
resolved config and its hash), `metrics.jsonl` (one result record per evaluation: the
FID-vs-kimg curve), `log.jsonl` and `checkpoints/step-XXXXXXXX/` whose `product/` is the native
network folder the sample grids are drawn from. Every record is validated against the record
schema and must carry the run's config hash, so a metrics file copied from another run is refused
rather than plotted under the wrong name. The newest checkpoint whose `state.json` was written (it
is written last) and whose product files match the hashes it lists is the one used; hashing the
product alone keeps this cheap for large runs.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidbench.errors import CheckpointError, ConfigError
from sidbench.fileio import sha256_file
from sidbench.records import RecordError, validate_record

CONFIG = "config.json"
METRICS = "metrics.jsonl"
LOG = "log.jsonl"
_RUN_HINT = "give folders written by `sidbench distill RECIPE --outdir DIR` (config.json, metrics.jsonl, " \
            "checkpoints/)"


@dataclass
class Checkpoint:
    """The newest complete checkpoint of a run and its product network folder."""

    path: Path
    step: int
    kimg: float | None
    product: Path
    state_sha256: str  # sha256 of state.json, which lists the sha256 of every file of the checkpoint
    product_sha256: str | None  # the product's network.safetensors, as state.json lists it


@dataclass
class Run:
    """One run folder, read and checked; `records` are its evaluations, oldest first."""

    path: Path
    name: str  # the recipe's name (the records' method.label)
    config: dict[str, Any]
    config_hash: str
    records: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Checkpoint | None = None
    skipped_checkpoints: list[str] = field(default_factory=list)  # why newer ones were not used
    key: str = ""  # the name shown in the report, unique among the report's runs

    @property
    def suite(self) -> str:
        return str(self.config.get("suite", ""))

    @property
    def method(self) -> str:
        return str(self.config.get("method", ""))

    @property
    def expected(self) -> list[dict[str, Any]]:
        """The recipe's `expected:` entries (paper numbers with their tolerance)."""
        value = self.config.get("expected") or []
        return [dict(e) for e in value if isinstance(e, Mapping)]

    @property
    def last(self) -> dict[str, Any] | None:
        """The newest evaluation record (the one a verdict is about), or None."""
        return self.records[-1] if self.records else None

    def metric_keys(self) -> list[str]:
        keys: list[str] = []
        for rec in self.records:
            keys += [k for k in rec["metrics"] if k not in keys]
        return keys

    def curve(self, key: str) -> list[tuple[float, float, bool]]:
        """(kimg, value, on protocol) for every evaluation that measured metric `key`."""
        from sidbench.leaderboards.table import number

        out = []
        for rec in self.records:
            entry = rec["metrics"].get(key)
            if entry is None or rec.get("kimg") is None:
                continue
            out.append((float(rec["kimg"]), number(entry["value"]), entry.get("full_protocol") is not False))
        return out

    def best(self, key: str) -> tuple[float, float] | None:
        """(value, kimg) of the best finite value of metric `key` over the run's evaluations."""
        points = [(v, k) for k, v, _ in self.curve(key) if math.isfinite(v)]
        if not points:
            return None
        lower = bool(next(r["metrics"][key]["lower_is_better"] for r in self.records if key in r["metrics"]))
        return min(points) if lower else max(points, key=lambda p: (p[0], -p[1]))


def cost_hours(record: Mapping[str, Any], unit: str) -> float | None:
    """A record's cost in hours: `unit` "device" (device-hours) or "wall" (wall-clock hours)."""
    cost = record.get("cost") or {}
    if unit == "device":
        value = cost.get("device_hours")
        return float(value) if isinstance(value, (int, float)) else None
    value = cost.get("wall_seconds")
    return float(value) / 3600 if isinstance(value, (int, float)) else None


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not JSON ({exc})",
                          hint=f"the {what} of a run is written by the trainer; it may have been edited "
                               "or cut short") from None


def _read_metrics(path: Path, config_hash: str) -> list[dict[str, Any]]:
    """Every record of metrics.jsonl, validated; a last line cut short by a crash is dropped."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path} line {i}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines):
                continue  # an append cut short: the run was killed while writing it
            raise ConfigError(f"{where} is not JSON", hint="metrics.jsonl holds one result record per line") \
                from None
        try:
            validate_record(record, where=where)
        except RecordError as exc:
            raise ConfigError(exc.message, hint="each line of metrics.jsonl is a result record (schema v1)") \
                from None
        if record.get("config_hash") != config_hash:
            raise ConfigError(f"{where} is a record of config {str(record.get('config_hash'))[:12]}, but the "
                              f"run's config.json has {config_hash[:12]}",
                              hint="metrics.jsonl was copied from another run; keep each run's files "
                                   "together")
        records.append(record)
    return sorted(records, key=lambda r: (r.get("step") or 0, r.get("kimg") or 0.0))


def _read_log(path: Path) -> list[dict[str, Any]]:
    from sidbench.train.monitor import read_jsonl

    return read_jsonl(path)


def _newest_checkpoint(run_dir: Path) -> tuple[Checkpoint | None, list[str]]:
    """The newest checkpoint with a state.json whose product files match it; why newer ones were skipped."""
    from sidbench.train.checkpoint import PRODUCT, STATE, list_checkpoints, read_state

    skipped = []
    for folder in list_checkpoints(run_dir):
        try:
            state = read_state(folder, verify=False)
            files = state["files"]
            for rel, digest in files.items():
                if rel.startswith(f"{PRODUCT}/") and sha256_file(folder / rel) != digest:
                    raise CheckpointError(f"checkpoint {folder} is not valid: {rel} does not match its "
                                          "sha256")
        except CheckpointError as exc:
            skipped.append(exc.message)
            continue
        except OSError as exc:
            skipped.append(f"checkpoint {folder}: {exc.strerror or exc}")
            continue
        kimg = state.get("kimg")
        return Checkpoint(path=folder, step=int(state["step"]),
                          kimg=float(kimg) if kimg is not None else None, product=folder / PRODUCT,
                          state_sha256=sha256_file(folder / STATE),
                          product_sha256=files.get(f"{PRODUCT}/network.safetensors")), skipped
    return None, skipped


def load_run(path: str | os.PathLike) -> Run:
    """Read and check one run folder; a folder that is not a run is one clear ConfigError."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"run folder {p} does not exist", hint=_RUN_HINT)
    if not p.is_dir():
        raise ConfigError(f"{p} is a file, not a run folder", hint=_RUN_HINT)
    if not (p / CONFIG).is_file():
        raise ConfigError(f"{p} is not a training run folder: it has no {CONFIG}", hint=_RUN_HINT)
    raw = _read_json(p / CONFIG, CONFIG)
    if not isinstance(raw, dict) or not isinstance(raw.get("config"), dict) or \
            not isinstance(raw.get("config_hash"), str):
        raise ConfigError(f"{p / CONFIG} is not a run's config (it needs 'config' and 'config_hash')",
                          hint=_RUN_HINT)
    config, config_hash = raw["config"], raw["config_hash"]
    records = _read_metrics(p / METRICS, config_hash)
    checkpoint, skipped = _newest_checkpoint(p)
    if not records and checkpoint is None:
        raise ConfigError(f"run {p} has no evaluation in {METRICS} and no complete checkpoint: nothing to "
                          "report",
                          hint="let the run reach its first evaluation (training.eval_kimg) or checkpoint")
    name = str(config.get("name") or p.name)
    return Run(path=p, name=name, config=config, config_hash=config_hash, records=records,
               log=_read_log(p / LOG), checkpoint=checkpoint, skipped_checkpoints=skipped, key=name)


def load_runs(paths: Sequence[str | os.PathLike]) -> list[Run]:
    """Every run, each given once; runs of the same name are told apart by their folder."""
    if not paths:
        raise ConfigError("no run folders given", hint=_RUN_HINT)
    seen: dict[Path, str] = {}
    runs = []
    for path in paths:
        run = load_run(path)
        real = run.path.resolve()
        if real in seen:
            raise ConfigError(f"run folder {path} is given twice (also as {seen[real]})",
                              hint="give each run once")
        seen[real] = str(path)
        runs.append(run)
    names = [r.name for r in runs]
    for run in runs:
        if names.count(run.name) > 1:
            run.key = f"{run.name} ({run.path.name})"
    keys = [r.key for r in runs]
    for i, run in enumerate(runs):
        if keys.count(run.key) > 1:
            run.key = f"{run.key} #{i + 1}"
    return runs
