"""The embedded default suite end to end: the newcomer's first run, with every distillation method.

It walks the same path as a big suite — a packaged teacher loaded from safetensors, EDM Heun
sampling with per-image seeds into resumable PNG folders, feature extraction and pinned protocols
against shipped reference statistics, one result record per row, a leaderboard version and a
report — on scikit-learn's digits, so it finishes on a laptop CPU in minutes. Rows: the teacher at
its suite's Heun steps; the same teacher with only 2 Heun steps (3 NFE), the few-step gap that
distillation closes; then one row per registered distillation method (NFE 1), each the shipped
teacher distilled on the shared trainer with the method's digits recipe, cut to the same number
of training steps for every method, so they compare on equal terms; a multi-step student (ADD)
also gets a row at its recorded noise levels (4 steps).

Recipes: SiD's and SiDA's are `DISTILL_RECIPES` (kept equal to `recipes/sid-digits.yaml` and
`recipes/sida-digits.yaml` by tests/test_recipes.py, so an installed package has them); another
method's is its `Method.quickstart_recipe` (a mapping or a recipe file a plugin ships), else
`recipes/<name>-digits.yaml` of the source checkout the package runs from; a method with neither
is listed as skipped with the reason. A method whose plugin does not load, or whose run fails, is
listed as failed with its one-line error (the traceback goes to `<out>/<name>/error.txt`), and
the other methods still run.

The budget is deterministic: `--budget MINUTES` sets the training steps of every method,
round(BASE_STEPS * budget / DEFAULT_BUDGET) (at least 1). The quickstart never stops on a clock,
so a given budget always gives the same numbers; DEFAULT_BUDGET is what the default run needs on
an idle 2-core CPU, with room to spare.

Working folder `out`: `heun18/`, `heun2/` (teacher images), `pairs/` (teacher pairs, for a method
with a `pairs` setting such as DMD), `<method>/steps-N-<config hash>/{run,images,images-Kstep}`, `records/`
(one result record per row, never edited: a rerun that measures the same numbers keeps the file,
a different measurement of a row is a new file), `leaderboards/digits/vX.Y.Z/`, `report.html` and
`results.json` (what this invocation did). Everything resumes: finished images, pairs, training
runs and records are reused.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidbench.errors import ConfigError
from sidbench.fileio import atomic_write_text, sha256_file
from sidbench.jsonsafe import dumps
from sidbench.records import read_record, result_record, write_record
from sidbench.suites import get_suite

QUICKSTART_METRICS = ("fid", "is", "kid", "pr")
DISTILL_SUITE = "digits"
DEFAULT_BUDGET = 15.0  # minutes: the default run, on an idle 2-core CPU, with room to spare
BASE_STEPS = 100  # training steps of every method at the default budget
NUM_PAIRS = 256  # teacher (noise, image) pairs for a method with a `pairs` setting (DMD's regression)
CURVE_POINTS = 2  # periodic FD evaluations of each run after kimg 0 (the report's FD-vs-kimg curve)
CHECKPOINTS = 4  # checkpoints per run (a killed quickstart resumes from the newest)
REPORT_GRID = 8  # images per side of each run's sample grid in the report
TEACHER_METHOD = "teacher-heun"

# The one-step rows of sid and sida: recipes/sid-digits.yaml and recipes/sida-digits.yaml, the same
# settings (a test keeps them equal). The papers' method settings; a training block scaled to a laptop:
# 800 steps of 32 images at lr 1e-4 (the papers: 1e-5, batches of 256 for hundreds of Mimg), EMA
# half-life 1 kimg; SiDA's hard-coded 100 / 200 kimg gates scaled likewise to 10 / 20 steps. The
# quickstart runs the first `budget_steps(budget)` steps of each (100 at the default budget).
_NETWORK = {"optimizer": "adam", "lr": 1e-4, "betas": [0.0, 0.999], "eps": 1e-8, "weight_decay": 0.0,
            "grad_clip_value": None, "grad_clip_norm": None, "dropout": None, "warmup_kimg": 0}
_GENERATOR = {**_NETWORK, "ema_halflife_kimg": 1.0, "ema_rampup": None}
_TRAINING = {"seed": 0, "batch": 32, "batch_per_gpu": 32, "duration_kimg": 25.6, "precision": "fp32",
             "teacher": None, "dataset": None, "init_generator": None, "nan_guard": 10,
             "checkpoint_kimg": 3.2, "eval_kimg": 3.2,
             "eval": {"protocols": ["digits-fd"], "num_images": 2000},
             "log_every_kimg": 0.16, "tensorboard": False}
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


def budget_steps(budget: float) -> int:
    """Training steps of every method for a budget in minutes: round(BASE_STEPS * budget / DEFAULT_BUDGET),
    at least 1. A function of the budget alone, so a budget always buys the same steps on any machine."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) \
            or budget <= 0:
        raise ConfigError(f"--budget {budget!r} must be a finite number of minutes greater than 0",
                          hint=f"e.g. --budget {DEFAULT_BUDGET:g} (the default)")
    return max(1, round(BASE_STEPS * budget / DEFAULT_BUDGET))


def source_recipes_dir() -> Path:
    """`recipes/` of the source checkout the package runs from (it may not exist in an installed copy)."""
    return Path(__file__).resolve().parents[2] / "recipes"


# --- which methods run ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """A registered method as the quickstart sees it: ready (with its recipe), skipped or failed (why)."""

    name: str
    status: str  # "ready", "skipped" or "failed"
    reason: str = ""
    recipe: Mapping[str, Any] | None = None
    recipe_source: str = ""
    distribution: str = ""


def _recipe_of(name: str, method: Any) -> tuple[Mapping[str, Any], str] | str:
    """(raw recipe, where it came from), or the reason there is none."""
    from sidbench.train.config import read_recipe

    if name in DISTILL_RECIPES:
        return DISTILL_RECIPES[name], f"recipes/{DISTILL_RECIPES[name]['name']}.yaml"
    given = getattr(method, "quickstart_recipe", None)
    if isinstance(given, Mapping):
        return dict(given), f"{name}'s Method.quickstart_recipe"
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_file():
            return f"its quickstart_recipe {path} does not exist (install the plugin from its source folder)"
        return read_recipe(path), str(path)
    path = source_recipes_dir() / f"{name}-{DISTILL_SUITE}.yaml"
    if path.is_file():
        return read_recipe(path), f"recipes/{path.name}"
    return (f"no {DISTILL_SUITE} recipe: the plugin sets no Method.quickstart_recipe and there is no "
            f"recipes/{name}-{DISTILL_SUITE}.yaml")


def distillation_methods(only: Sequence[str] | None = None) -> list[Candidate]:
    """Every registered distillation method (product role "generator"; teacher training such as edm is
    not one), or those named in `only`, with its digits recipe; plugins that failed to load as failed."""
    from sidbench.registry import METHODS, suggest

    items = dict(METHODS.items())
    usable = sorted(n for n, m in items.items() if getattr(m, "product_role", None) == "generator")
    broken = sorted(METHODS.broken)
    if only is not None:
        for name in only:
            if name in items and name not in usable:
                raise ConfigError(f"--methods: '{name}' is not a distillation method (its product is a "
                                  f"{items[name].product_role}, not a one-step generator)",
                                  hint=f"distillation methods: {', '.join(usable)}")
            if name not in usable and name not in broken:
                raise ConfigError(f"--methods: unknown method '{name}'.{suggest(name, usable + broken)}",
                                  hint=f"distillation methods: {', '.join(usable)}")
        wanted = set(only)
        usable = [n for n in usable if n in wanted]
        broken = [n for n in broken if n in wanted]
    out = []
    for name in sorted(usable + broken):
        if name in broken:
            b = METHODS.broken[name]
            out.append(Candidate(name, "failed", f"the plugin did not load: {b.error}",
                                 distribution=b.source))
            continue
        method = items[name]
        try:
            found = _recipe_of(name, method)
        except Exception as exc:  # a plugin's recipe that cannot be read fails that method only
            out.append(Candidate(name, "failed", one_line(exc), distribution=METHODS.distribution(name)))
            continue
        if isinstance(found, str):
            out.append(Candidate(name, "skipped", found, distribution=METHODS.distribution(name)))
            continue
        raw, where = found
        if raw.get("method") != name or raw.get("suite") != DISTILL_SUITE:
            why = (f"{where} is a recipe of method {raw.get('method')!r} on suite {raw.get('suite')!r}, "
                   f"not {name} on {DISTILL_SUITE}")
            out.append(Candidate(name, "failed", why, distribution=METHODS.distribution(name)))
            continue
        out.append(Candidate(name, "ready", recipe=raw, recipe_source=where,
                             distribution=METHODS.distribution(name)))
    return out


def one_line(exc: BaseException) -> str:
    """An exception as the one line the table shows: a sidbench error's message, else 'Type: message'."""
    from sidbench.errors import SidbenchError

    text = str(exc) if isinstance(exc, SidbenchError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def quickstart_recipe(raw: Mapping[str, Any], steps: int, *, num_images: int,
                      pairs: str | None = None) -> dict[str, Any]:
    """A method's digits recipe cut to `steps` training steps: the same batch and settings, checkpoints
    CHECKPOINTS times, digits-fd on `num_images` images at kimg 0 and CURVE_POINTS times after; with
    `pairs`, the teacher pairs folder of a method that has that setting."""
    out = copy.deepcopy(dict(raw))
    training = out.setdefault("training", {})
    batch = int(training.get("batch", 256))
    nimg = steps * batch
    training["duration_kimg"] = nimg / 1000
    training["checkpoint_kimg"] = math.ceil(steps / CHECKPOINTS) * batch / 1000
    training["eval_kimg"] = math.ceil(steps / CURVE_POINTS) * batch / 1000
    training["eval"] = {"protocols": ["digits-fd"], "num_images": num_images}
    training["tensorboard"] = False
    if pairs is not None:
        out.setdefault("method_settings", {})["pairs"] = pairs
    return out


# --- rows ----------------------------------------------------------------------------------------

@dataclass
class Line:
    """One line of the quickstart's table: a measured row, or a method skipped or failed (with why)."""

    label: str
    method: str
    status: str  # "measured", "skipped" or "failed"
    reason: str = ""
    record: dict[str, Any] | None = None
    record_file: str | None = None
    reused: bool = False  # the record file was there already (same measurement)
    run_dir: str | None = None
    this_run: dict[str, Any] = field(default_factory=dict)  # what this invocation spent on the row

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label, "method": self.method, "status": self.status, "reason": self.reason,
                "record_file": self.record_file, "reused": self.reused, "run_dir": self.run_dir,
                "this_run": self.this_run}


@dataclass
class _Made:
    """Images of one row and what the record says about how they were made."""

    label: str
    images: Path
    summary: Any  # GenerateSummary
    method: dict[str, Any]
    generate_seconds: float
    networks: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    config_hash: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)


class _Context:
    """What every row shares: suite, teacher, reference, seeds, settings, and the stage printer."""

    def __init__(self, out: Path, s: Any, net: Any, teacher_dir: Path, teacher_sha: str, ref_path: Path,
                 seeds: list[int], batch_size: int, device: str, progress: bool,
                 say: Callable[[str], None]):
        from sidbench.environment import environment

        self.out, self.s, self.net, self.teacher_dir, self.teacher_sha = out, s, net, teacher_dir, teacher_sha
        self.ref_path, self.ref_sha = ref_path, sha256_file(ref_path)
        self.seeds, self.batch_size, self.device, self.progress, self.say = seeds, batch_size, device, \
            progress, say
        self.env = {**environment(), "device": device, "processes": 1}
        self.teacher_nfe = 2 * s.teacher.heun_steps - 1
        self._reference = None
        self.pairs: tuple[str, float] | None = None

    @property
    def reference(self) -> Any:
        if self._reference is None:
            from sidbench.data.digits import DigitsDataset

            self._reference = DigitsDataset(resolution=self.s.resolution)
        return self._reference


def quickstart(out_dir: str | os.PathLike = "runs/quickstart", *, suite: str = "digits",
               num_images: int = 2000, batch_size: int = 250, device: str = "cpu", few_steps: int = 2,
               distill: bool = True, budget: float = DEFAULT_BUDGET, methods: Sequence[str] | None = None,
               progress: bool = True, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Teacher rows, then every distillation method (or those in `methods`) distilled for
    `budget_steps(budget)` steps and evaluated; records, a leaderboard version, a report, `results.json`.

    `say` receives one line per stage (default: printed to stderr when `progress`). Returns what
    results.json holds: suite, budget, steps, the table's lines (with each record) and where the
    records, leaderboard version and report are.
    """
    from sidbench.nets.native import load_network, read_network_record
    from sidbench.suites.resolve import resolve_suite

    steps = budget_steps(budget)
    s = get_suite(suite)
    if s.teacher.packaged is None:
        raise ConfigError(f"suite '{suite}' has no packaged teacher; quickstart runs embedded suites only",
                          hint="use `sidbench quickstart --suite digits`")
    candidates = distillation_methods(methods) if distill and s.name == DISTILL_SUITE else []
    if say is None:
        say = _stderr_printer() if progress else (lambda line: None)
    assets = resolve_suite(s.name, need=("teacher", "ref_stats"))
    teacher_dir, ref_path = Path(assets.teacher), Path(assets.ref_stats)
    out = Path(out_dir)
    net = load_network(teacher_dir, device=device)
    teacher_sha = read_network_record(teacher_dir)["weights_sha256"]  # load_network checked it
    ctx = _Context(out, s, net, teacher_dir, teacher_sha, ref_path, list(range(num_images)), batch_size,
                   device, progress, say)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    stages = 2 + len(candidates)
    lines: list[Line] = []
    for i, heun_steps in enumerate((s.teacher.heun_steps, few_steps)):
        say(f"[{i + 1}/{stages}] teacher, {heun_steps} Heun steps: {num_images} images, then the "
            f"{', '.join(QUICKSTART_METRICS)} metrics")
        made = _teacher_images(ctx, heun_steps)
        lines.append(_measure(ctx, made, TEACHER_METHOD))
    for i, cand in enumerate(candidates):
        stage = f"[{i + 3}/{stages}] {cand.name}"
        if cand.status != "ready":
            say(f"{stage}: {cand.status}: {cand.reason}")
            lines.append(Line(f"{cand.name} one-step", cand.name, cand.status, cand.reason))
            continue
        say(f"{stage}: distilling {steps} step{'s' if steps != 1 else ''} ({cand.recipe_source}), then "
            "evaluating")
        lines += _method_lines(ctx, cand, steps)
    records = [Path(line.record_file) for line in lines if line.record_file]
    leaderboard = _release(out / "leaderboards", s.name, records, steps) if records else None
    report = _make_report(ctx, lines, leaderboard)
    result = {
        "suite": s.name, "budget_minutes": budget, "steps": steps, "num_images": num_images,
        "lines": [line.as_json() for line in lines],
        "records": [line.record for line in lines if line.record is not None],
        "leaderboard": leaderboard, "report": report,
        "seconds": round(time.perf_counter() - t_start, 2),
        "cpu_seconds": round(time.process_time() - cpu_start, 2),
        "cpu_threads": ctx.env.get("cpu_threads"),
    }
    atomic_write_text(out / "results.json", dumps(result) + "\n")
    result["path"] = str(out / "results.json")
    return result


def _stderr_printer() -> Callable[[str], None]:
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False)
    return lambda line: console.print(f"[bold]quickstart[/bold] {escape(line)}", markup=True)


def _teacher_images(ctx: _Context, heun_steps: int) -> _Made:
    from sidbench.generation import generate

    s = ctx.s
    t0 = time.perf_counter()
    summary = generate(ctx.net, ctx.out / f"heun{heun_steps}", ctx.seeds, batch_size=ctx.batch_size,
                       num_steps=heun_steps, device=ctx.device, sigma_min=s.teacher.sigma_min,
                       sigma_max=s.teacher.sigma_max, rho=s.teacher.rho,
                       network_info={"weights_sha256": ctx.teacher_sha}, progress=ctx.progress)
    return _Made(f"teacher heun-{heun_steps}", ctx.out / f"heun{heun_steps}", summary,
                 {"name": TEACHER_METHOD, "version": "1", "num_steps": heun_steps, "role": "teacher"},
                 round(time.perf_counter() - t0, 2))


def _measure(ctx: _Context, made: _Made, method: str, run_dir: Path | None = None) -> Line:
    """Evaluate a row's images with the suite's protocols and keep its record in `out/records/`."""
    from sidbench.metrics.evaluate import evaluate
    from sidbench.metrics.protocols import get_protocol
    from sidbench.nets.seeds import format_seeds

    protocols = [p for p in ctx.s.protocols if get_protocol(p).metric in QUICKSTART_METRICS]
    t0 = time.perf_counter()
    result = evaluate(made.images, ref=str(ctx.ref_path), ref_images=ctx.reference,
                      metrics=QUICKSTART_METRICS, protocols=protocols, batch_size=ctx.batch_size,
                      device=ctx.device)
    evaluate_seconds = round(time.perf_counter() - t0, 2)
    summary = made.summary
    role = made.method.get("role", "generator")
    info = {**made.method, "nfe": summary.nfe, "label": made.label, "role": role}
    if role == "generator":
        info.setdefault("teacher_nfe", ctx.teacher_nfe)
    cost = {**made.cost, "generate_seconds": made.generate_seconds, "evaluate_seconds": evaluate_seconds}
    this_run = {"generate_seconds": made.generate_seconds, "evaluate_seconds": evaluate_seconds,
                "images_generated": summary.written, "images_reused": summary.skipped,
                **{k: v for k, v in made.cost.items() if k.endswith("_now")}}
    cost = {k: v for k, v in cost.items() if not k.endswith("_now")}
    record = result_record(
        suite={"name": ctx.s.name, "version": ctx.s.version}, method=info, metrics=result["metrics"],
        networks={"teacher_sha256": ctx.teacher_sha, "reference_stats_sha256": ctx.ref_sha, **made.networks},
        environment={**ctx.env, **made.environment}, cost=cost, config_hash=made.config_hash,
        extra={"seeds": format_seeds(ctx.seeds), "images": str(made.images), **made.extra})
    path, reused = keep_record(ctx.out / "records", record)
    if reused:
        record = read_record(path)
    return Line(made.label, method, "measured", record=record, record_file=str(path), reused=reused,
                run_dir=str(run_dir) if run_dir is not None else None, this_run=this_run)


# --- distilled rows ------------------------------------------------------------------------------

def _method_lines(ctx: _Context, cand: Candidate, steps: int) -> list[Line]:
    """Distil, sample and evaluate one method; any failure becomes a failed line (the others go on)."""
    lines: list[Line] = []
    label = f"{cand.name} one-step"
    try:
        config = _config(ctx, cand, steps)
        # one folder per config: other steps or evaluation images are another run, never a refused resume
        method_dir = ctx.out / cand.name / f"steps-{steps}-{config.config_hash()[:8]}"
        run, cost = _distil(ctx, cand, config, method_dir)
        product = _Product(ctx, cand, run, config, cost, method_dir)
        for label, images, sigmas in product.rows:
            made = product.images(label, images, sigmas)
            lines.append(_measure(ctx, made, cand.name, run_dir=run.outdir))
    except Exception as exc:  # a failing method (a plugin's bug, a NaN run) must not stop the others
        reason = one_line(exc)
        try:
            (ctx.out / cand.name).mkdir(parents=True, exist_ok=True)
            atomic_write_text(ctx.out / cand.name / "error.txt", "".join(traceback.format_exception(exc)))
        except OSError:
            pass
        ctx.say(f"{cand.name}: failed: {reason}")
        lines.append(Line(label, cand.name, "failed", reason))
    return lines


def _needs_pairs(config: Any) -> bool:
    return hasattr(config.method_settings, "pairs")


def _ensure_pairs(ctx: _Context) -> tuple[str, float]:
    """NUM_PAIRS teacher pairs of the suite's Heun sampler in `out/pairs` (made once, resumable)."""
    if ctx.pairs is None:
        from sidbench.generation.pairs import make_pairs

        s = ctx.s
        ctx.say(f"teacher pairs: {NUM_PAIRS} with {s.teacher.heun_steps} Heun steps -> {ctx.out / 'pairs'}")
        summary = make_pairs(ctx.net, ctx.out / "pairs", list(range(NUM_PAIRS)),
                             num_steps=s.teacher.heun_steps, sigma_min=s.teacher.sigma_min,
                             sigma_max=s.teacher.sigma_max, rho=s.teacher.rho,
                             batch_size=min(ctx.batch_size, NUM_PAIRS), device=ctx.device,
                             network_info={"weights_sha256": ctx.teacher_sha}, progress=ctx.progress)
        ctx.pairs = (str(ctx.out / "pairs"), round(summary.seconds, 2))
    return ctx.pairs


_STEP = re.compile(r"step-(\d+)$")


def _config(ctx: _Context, cand: Candidate, steps: int) -> Any:
    """The method's RunConfig: its digits recipe cut to `steps`, with the teacher pairs if it takes them."""
    from sidbench.train.config import load_recipe

    assert cand.recipe is not None
    config = load_recipe(quickstart_recipe(cand.recipe, steps, num_images=len(ctx.seeds)))
    if _needs_pairs(config):
        pairs, _ = _ensure_pairs(ctx)
        config = load_recipe(quickstart_recipe(cand.recipe, steps, num_images=len(ctx.seeds), pairs=pairs))
    return config


def _distil(ctx: _Context, cand: Candidate, config: Any, method_dir: Path) -> tuple[Any, dict[str, Any]]:
    """Train (or find finished) the method's run; returns the RunResult and the training cost."""
    from sidbench.train.run import train

    steps = config.training.total_steps
    cost: dict[str, Any] = {}
    if _needs_pairs(config):
        cost["pairs_seconds"] = _ensure_pairs(ctx)[1]
    t0, c0 = time.perf_counter(), time.process_time()
    run = train(config, method_dir / "run", resume="auto", progress=ctx.progress, device=ctx.device)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if not run.finished or run.product is None:
        raise ConfigError(f"{cand.name}'s run stopped at step {run.steps} of {steps}",
                          hint=f"see {method_dir / 'run' / 'log.jsonl'}")
    resumed_at = 0
    if run.resumed_from is not None:
        m = _STEP.search(Path(run.resumed_from).name)
        resumed_at = int(m.group(1)) if m else run.steps
    trained = run.steps - resumed_at
    totals = _add_train_cost(method_dir / "cost.json", run.config_hash, wall, cpu, trained)
    cost.update({"train_seconds": totals["train_seconds"], "train_cpu_seconds": totals["train_cpu_seconds"],
                 "train_seconds_now": round(wall, 2), "train_cpu_seconds_now": round(cpu, 2),
                 "steps_trained_now": trained})
    return run, cost


def _add_train_cost(path: Path, config_hash: str, wall: float, cpu: float, steps: int) -> dict[str, Any]:
    """Wall and CPU seconds of the training calls that trained this run's steps, summed over resumes."""
    totals = {"config_hash": config_hash, "train_seconds": 0.0, "train_cpu_seconds": 0.0, "steps": 0}
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(old, dict) and old.get("config_hash") == config_hash:
            totals.update({k: old[k] for k in ("train_seconds", "train_cpu_seconds", "steps") if k in old})
    except (OSError, ValueError):
        pass
    if steps > 0:
        totals["train_seconds"] = round(float(totals["train_seconds"]) + wall, 2)
        totals["train_cpu_seconds"] = round(float(totals["train_cpu_seconds"]) + cpu, 2)
        totals["steps"] = int(totals["steps"]) + steps
        atomic_write_text(path, dumps(totals) + "\n")
    return totals


class _Product:
    """A finished run's product: its network, what every row of it records, and the rows to sample:
    one step, and for a multi-step student (ADD: `student_sigmas` in its network.json) all its levels."""

    def __init__(self, ctx: _Context, cand: Candidate, run: Any, config: Any, cost: dict[str, Any],
                 method_dir: Path):
        from sidbench.generation.multistep import pick_levels
        from sidbench.nets.native import load_network, read_network_record

        self.ctx, self.run, self.cost = ctx, run, cost
        self.record = read_network_record(run.product)
        self.generator = load_network(run.product, device=ctx.device)
        m = config.get_method()
        self.base = {"name": m.name, "version": m.version, "kimg": run.kimg, "steps": run.steps,
                     "recipe": cand.recipe_source, "provided_by": cand.distribution}
        if _needs_pairs(config):
            self.base["teacher_pairs"] = NUM_PAIRS
        self.networks = {"generator_sha256": self.record["weights_sha256"]}
        state = Path(run.checkpoint) / "state.json"
        if state.is_file():
            self.networks["checkpoint_sha256"] = sha256_file(state)
        self.env = {"batch_per_gpu": config.training.micro_batch(1)}
        levels = list(self.record.get("student_sigmas") or [])
        self.rows: list[tuple[str, Path, list[float] | None]] = [
            (f"{cand.name} one-step", method_dir / "images", None)]
        if len(levels) > 1:
            n = len(levels)
            self.rows.append((f"{cand.name} {n}-step", method_dir / f"images-{n}step",
                              list(pick_levels(levels, n))))

    def images(self, label: str, images: Path, sigmas: list[float] | None) -> _Made:
        """One PNG per seed: the one-step sampler, or the student's levels `sigmas`."""
        from sidbench.generation import generate

        ctx, record = self.ctx, self.record
        info = {"weights_sha256": record["weights_sha256"], "role": record.get("role")}
        t0 = time.perf_counter()
        summary = generate(self.generator, images, ctx.seeds, batch_size=ctx.batch_size, sampler="onestep",
                           sigma_init=float(record["sigma_init"]), device=ctx.device, network_info=info,
                           progress=ctx.progress, student_sigmas=sigmas)
        method = {**self.base, "num_steps": 1 if sigmas is None else len(sigmas)}
        if sigmas is not None:
            method["student_sigmas"] = sigmas
        return _Made(label, images, summary, method, round(time.perf_counter() - t0, 2),
                     networks=self.networks, cost=self.cost, config_hash=self.run.config_hash,
                     extra={"kimg": self.run.kimg, "step": self.run.steps, "run": str(self.run.outdir)},
                     environment=self.env)


# --- records, leaderboard, report ----------------------------------------------------------------

_IDENTITY_METRIC = ("value", "protocol", "num_images", "seeds", "reference_sha256", "extractor_sha256")


def _identity(record: Mapping[str, Any]) -> str:
    """What makes two records the same measurement (not when or how fast it was made)."""
    body = {k: record.get(k) for k in ("suite", "method", "config_hash", "networks", "kimg", "step", "seeds",
                                       "source")}
    body["metrics"] = {k: {f: v.get(f) for f in _IDENTITY_METRIC} for k, v in record["metrics"].items()}
    return json.dumps(json.loads(dumps(body)), sort_keys=True)


def keep_record(folder: Path, record: Mapping[str, Any]) -> tuple[Path, bool]:
    """Write `record` as `folder/<row>.json`, or reuse a record file of the same measurement there.

    Records are never edited: a different measurement of the same row (other images, a changed
    method) is a new file `<row>.2.json`, `.3`, ... Returns the path and whether it was reused.
    """
    from sidbench.leaderboards.table import row_id

    rid = row_id(record)
    folder.mkdir(parents=True, exist_ok=True)
    want = _identity(record)
    n = 1
    while True:
        path = folder / (f"{rid}.json" if n == 1 else f"{rid}.{n}.json")
        if not path.exists():
            return write_record(path, record), False
        try:
            if _identity(read_record(path)) == want:
                return path, True
        except ConfigError:
            pass  # an unreadable file is left alone, and the record goes under the next name
        n += 1


def _release(root: Path, suite: str, records: list[Path], steps: int) -> dict[str, Any] | None:
    """A new leaderboard version in `root` with the rows the newest one lacks (MINOR) or holds with
    another record (PATCH); None and the newest version when nothing changed."""
    from sidbench.leaderboards.store import add_records, load_version, verify_all
    from sidbench.leaderboards.table import row_id

    known = verify_all(root, suite)
    old: dict[str, bytes] = {}
    if known:
        _, rows = load_version(root, suite, known[-1])
        old = rows.raw
    new, changed = [], []
    for path in records:
        rid = row_id(read_record(path))
        if rid not in old:
            new.append(path)
        elif old[rid] != path.read_bytes():
            changed.append(path)
    made = []
    note = f"sidbench quickstart, {steps} training steps per method"
    if new:
        made.append(add_records(root, suite, new, note=note))
    if changed:
        made.append(add_records(root, suite, changed, bump="patch", note=note))
    latest = verify_all(root, suite)[-1]
    return {"suite": suite, "version": str(latest), "path": str(root / suite / str(latest)),
            "root": str(root), "released_now": [m["version"] for m in made]}


def _make_report(ctx: _Context, lines: list[Line], leaderboard: dict[str, Any] | None) -> dict[str, Any]:
    """`out/report.html` of the distilled runs (curves, cost, sample grids) with the leaderboard version
    just built; a report that cannot be made is said, and the rest of the quickstart stands."""
    from sidbench.reports.build import build_content, write_report
    from sidbench.reports.runs import load_runs

    runs = list(dict.fromkeys(line.run_dir for line in lines if line.run_dir))
    if not runs:
        return {"path": None, "reason": "no distilled run to report on (--no-distill, or every method "
                                        "failed)"}
    path = ctx.out / "report.html"
    ctx.say(f"report: {len(runs)} runs and leaderboard {leaderboard['version'] if leaderboard else '-'} "
            f"-> {path}")
    try:
        board = leaderboard or {}
        content, notes = build_content(load_runs(runs), leaderboard=board.get("suite"),
                                       root=board.get("root", "leaderboards"), grid=REPORT_GRID,
                                       device=ctx.device)
        write_report(content, path)
    except Exception as exc:  # the records and the leaderboard are made: keep them, say what failed
        reason = one_line(exc)
        ctx.say(f"report: failed: {reason}")
        return {"path": None, "reason": f"failed: {reason}"}
    for note in notes:
        ctx.say(f"report: {note}")
    return {"path": str(path), "reason": "", "notes": list(notes)}


def summary_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One flat row per line of the table: the numbers a person looks at first (None where not measured)."""
    rows = []
    for line in result["lines"]:
        rec = _record_of(result, line)
        m = rec["metrics"] if rec else {}
        cost = rec["cost"] if rec else {}
        value = {k: m[k]["value"] if k in m else None for k in ("fid", "is", "kid", "precision", "recall")}
        status = line["status"] if line["status"] != "measured" else ("reused" if line["reused"] else "new")
        rows.append({
            "row": line["label"], "NFE": rec["method"]["nfe"] if rec else None,
            "FD": value["fid"], "IS": value["is"], "KID": value["kid"],
            "precision": value["precision"], "recall": value["recall"],
            "kimg": rec.get("kimg") if rec else None,
            "train s": cost.get("train_seconds"), "train CPU s": cost.get("train_cpu_seconds"),
            "status": status if not line["reason"] else f"{status}: {line['reason']}",
        })
    return rows


def _record_of(result: Mapping[str, Any], line: Mapping[str, Any]) -> dict[str, Any] | None:
    if line["status"] != "measured":
        return None
    for rec in result["records"]:
        if rec["method"]["label"] == line["label"]:
            return rec
    return None
