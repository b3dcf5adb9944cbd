"""`sidbench validate METHOD`: what a method must do, checked on the digits suite in CPU minutes.

A method author runs this before opening a pull request. The method runs on the shared
trainer exactly as `distill` would run it, from a recipe built here: the method's default
settings (plus any `--set`) and a small training block. Each check is one item of the
result, passed or failed (with what went wrong); the first failure stops the list (the rest
are skipped), so a broken method is reported in seconds:

1. builds: the recipe resolves, every asset is found, the networks build, and every update
   of every phase runs once on a micro-batch and returns a per-sample loss of shape [b];
2. draws only from ctx.draws: no update touches the global RNG of torch, numpy or random
   (dropout off for this check: its masks are the trainer's), so its numbers cannot depend
   on how a batch is split over processes and accumulation rounds;
3. steps with finite losses: the main run, every step's loss terms finite, no update skipped;
4. same seed, same numbers: a second run, stopped at the first checkpoint, has the same bits;
5. SIGKILL and resume: `sidbench distill` in a real subprocess, killed with SIGKILL between
   two checkpoints, resumed with `--resume auto`, ends with the main run's bits;
6. checkpoint loads: the exported product loads as `generate` and `eval --generator` load
   it, renders images, and scores the same FD as the run's own evaluation;
7. FD improves: the product's FD (digits-fd) is below the initial generator's.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidbench.errors import SidbenchError
from sidbench.registry import METHODS

SUITE = "digits"
T2I_SUITE = "digits-t2i"  # where text-to-image methods (SiD-LSG, the ddpm-t2i teacher trainer) are checked
BATCH = 16
LR = 1e-4
EMA_HALFLIFE_KIMG = 0.5
FD_PROTOCOL = "digits-fd"
FD_IMAGES = 500
NAN_GUARD = 5
KILL_TIMEOUT_S = 600.0
CHECK_NAMES = ("builds", "draws only from ctx.draws", "steps with finite losses", "same seed, same numbers",
               "SIGKILL and resume", "checkpoint loads", "FD improves")


@dataclass
class Check:
    """One item of the checklist: passed True/False, or None when skipped (an earlier item failed)."""

    name: str
    passed: bool | None = None
    detail: str = ""
    seconds: float = 0.0


@dataclass
class ValidationResult:
    method: str
    version: str
    steps: int
    outdir: Path | None  # where the runs were kept (None: a temporary folder, removed)
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failed(self) -> Check | None:
        """The first item that failed or could not run."""
        return next((c for c in self.checks if not c.passed), None)

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)


def checkpoint_every(steps: int) -> int:
    """Steps between checkpoints: the repeat run stops at the first one; the killed run dies after it
    and is resumed to the second."""
    return max(1, steps // 5)


def validation_suite(method: Any) -> str:
    """digits for image methods; digits-t2i for methods whose product is a text-to-image network."""
    text = method.product_role == "t2i-generator" or method.name == "ddpm-t2i"
    return T2I_SUITE if text else SUITE


def validation_recipe(method_name: str, steps: int, batch: int = BATCH,
                      evaluate: bool = True) -> dict[str, Any]:
    """The digits recipe validate runs: the method's default settings and a small training block.

    Every trainable network gets Adam (0, 0.999) at lr 1e-4 (a short run), EMA half-life 0.5 kimg
    where the method keeps one; batches of 16; checkpoints every `checkpoint_every(steps)` steps;
    a log line per step; with `evaluate`, the product's FD on 500 images at kimg 0 and at the end
    (evaluation draws nothing the training uses, so the runs without it must match bit for bit).
    """
    method = METHODS.get(method_name)
    kimg = batch / 1000
    networks = {}
    for spec in method.networks:
        if spec.trainable:
            networks[spec.name] = {"optimizer": "adam", "lr": LR, "betas": [0.0, 0.999], "eps": 1e-8,
                                   "ema_halflife_kimg": EMA_HALFLIFE_KIMG, "ema_rampup": 0.05}
    return {
        "name": f"validate-{method.name}",
        "suite": validation_suite(method),
        "method": method.name,
        "method_settings": {},
        "training": {
            "seed": 0, "batch": batch, "batch_per_gpu": batch, "duration_kimg": steps * kimg,
            "precision": "fp32", "networks": networks, "nan_guard": NAN_GUARD,
            "checkpoint_kimg": checkpoint_every(steps) * kimg,
            "eval_kimg": steps * kimg if evaluate else None,
            "eval": {"protocols": [FD_PROTOCOL], "num_images": FD_IMAGES, "batch_size": 250},
            "log_every_kimg": kimg, "tensorboard": False,
        },
    }


def _error(exc: BaseException) -> str:
    """One line: the error, and for a bug (not a SidbenchError) where it was raised."""
    if isinstance(exc, SidbenchError):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


class _Checklist:
    """Runs the items in order and stops at the first failure: the items after it are skipped."""

    def __init__(self, result: ValidationResult, progress: bool):
        self.result, self.progress = result, progress

    def run(self, name: str, fn: Callable[[], str]) -> bool:
        item = Check(name)
        self.result.checks.append(item)
        failed = self.result.failed if len(self.result.checks) > 1 else None
        if failed is not None and failed is not item:
            item.detail = f"skipped: '{failed.name}' failed"
            return False
        t0 = time.perf_counter()
        try:
            item.detail = fn()
            item.passed = True
        except _Failed as exc:
            item.passed, item.detail = False, str(exc)
        except Exception as exc:  # the method's code is under test: any error is a failed item
            item.passed, item.detail = False, _error(exc)
        item.seconds = round(time.perf_counter() - t0, 2)
        if self.progress:
            mark = "PASS" if item.passed else "FAIL"
            print(f"validate: {mark} {name}: {item.detail}", file=sys.stderr, flush=True)
        return bool(item.passed)


class _Failed(Exception):
    """A check that ran and found the method wrong."""


# --------------------------------------------------------------------------- the checks ----

def _rng_states() -> tuple[torch.Tensor, Any, Any]:
    return torch.random.get_rng_state(), np.random.get_state(), random.getstate()


def _same_rng(a: tuple[torch.Tensor, Any, Any], b: tuple[torch.Tensor, Any, Any]) -> list[str]:
    touched = []
    if not torch.equal(a[0], b[0]):
        touched.append("torch")
    if not (a[1][0] == b[1][0] and np.array_equal(a[1][1], b[1][1]) and a[1][2:] == b[1][2:]):
        touched.append("numpy")
    if a[2] != b[2]:
        touched.append("random")
    return touched


def _phase_steps(method: Any, settings: Any, batch: int) -> list[tuple[Any, int]]:
    """(phase, a step inside it) for every phase of the method."""
    out, start = [], 0.0
    for phase in method.phases(settings):
        out.append((phase, math.ceil(round(start * 1000 / batch, 6))))
        if phase.until_kimg is not None:
            start = float(phase.until_kimg)
    return out


def _smoke(config: Any, method: Any) -> tuple[str, list[str]]:
    """Build the networks and run every update of every phase once; returns (detail, RNG misuses).

    Networks are built without dropout so that the only global-RNG use left is the method's own.
    """
    import dataclasses

    from sidbench.nets.native import read_network_config
    from sidbench.suites.resolve import resolve_suite
    from sidbench.train.data import open_training_data
    from sidbench.train.networks import build_networks, teacher_needed
    from sidbench.train.steps import Stepper, global_indices

    training = config.training
    nets_cfg = {n: dataclasses.replace(t, dropout=0.0) for n, t in training.networks.items()}
    config = dataclasses.replace(config, training=dataclasses.replace(training, networks=nets_cfg))
    device = torch.device("cpu")
    teacher = None
    if teacher_needed(config, method) or training.architecture is None:
        teacher = resolve_suite(config.get_suite(), teacher=training.teacher, need=("teacher",)).teacher
    arch = read_network_config(teacher) if teacher is not None and training.architecture is None else None
    nets = build_networks(config, method, device, teacher if teacher_needed(config, method) else None, arch)
    some = next(iter(nets.nets.values()))
    img_shape = (int(some.img_channels), int(some.img_resolution), int(some.img_resolution))
    stepper = Stepper(config, method, nets, device, rank=0, world=1, img_shape=img_shape,
                      label_dim=int(some.label_dim or 0))
    data = open_training_data(config.get_suite(), method, training.seed, training.batch, training.dataset)
    micro = min(4, stepper.micro)
    misuse: list[str] = []
    ran = []
    try:
        for phase, step in _phase_steps(method, config.method_settings, training.batch):
            idx = global_indices(0, 0, 1, micro)
            for name in phase.updates:
                update = method.update(name)
                ctx = stepper.context(step, name, 0, idx, data.batch(step, idx))
                before = _rng_states()
                out = update.fn(ctx)
                touched = _same_rng(before, _rng_states())
                if touched:
                    misuse.append(f"update '{name}' drew from the global {' and '.join(touched)} RNG")
                per = getattr(out, "per_sample", None)
                if not isinstance(per, torch.Tensor) or tuple(per.shape) != (micro,):
                    shape = tuple(per.shape) if isinstance(per, torch.Tensor) else type(out).__name__
                    raise _Failed(f"update '{name}' returned {shape}, not a LossOutput with per_sample "
                                  f"of shape ({micro},)")
                ran.append(f"{phase.name}/{name}")
    finally:
        data.close()
    names = ", ".join(f"{s.name} ({s.init})" for s in method.networks)
    return f"networks {names}; updates {', '.join(ran)} run", misuse


def _finite_log(outdir: Path) -> str:
    from sidbench.train.monitor import LOG, read_jsonl

    rows = read_jsonl(outdir / LOG)
    if not rows:
        raise _Failed("the run logged nothing")
    bad = []
    for row in rows:
        for term, value in (row.get("terms") or {}).items():
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                bad.append(f"{term} = {value} at step {row.get('step')}")
    skipped = sum(int(row.get("skipped") or 0) for row in rows)
    if bad or skipped:
        raise _Failed(f"non-finite loss terms: {bad[0]}" if bad
                      else f"{skipped} update(s) skipped as non-finite")
    terms = sorted({t for row in rows for t in (row.get("terms") or {})})
    return f"{rows[-1].get('step')} steps; terms {', '.join(terms)} finite at every step"


def _tensors(checkpoint: Path) -> dict[str, dict[str, torch.Tensor]]:
    from sidbench.train.checkpoint import read_tensors

    folder = checkpoint / "networks"
    return {p.stem: read_tensors(checkpoint, f"networks/{p.name}")
            for p in sorted(folder.glob("*.safetensors"))}


def _compare(a: Path, b: Path, what: str) -> str:
    """Every tensor of every network (and EMA) of two checkpoints bit for bit."""
    ta, tb = _tensors(a), _tensors(b)
    if sorted(ta) != sorted(tb):
        raise _Failed(f"{what}: the checkpoints hold other networks ({sorted(ta)} vs {sorted(tb)})")
    count = 0
    for net in ta:
        for key, x in ta[net].items():
            y = tb[net].get(key)
            if y is None or x.shape != y.shape or not torch.equal(x, y):
                diff = (x.double() - y.double()).abs().max().item() if y is not None and x.shape == y.shape \
                    else float("nan")
                raise _Failed(f"{what}: {net}.{key} differs (max |diff| {diff:.3g})")
            count += 1
    return f"{count} tensors of {len(ta)} networks identical"


def _checkpoint(outdir: Path, step: int) -> Path:
    from sidbench.train.checkpoint import checkpoint_path, read_state

    path = checkpoint_path(outdir, step)
    read_state(path)  # exists and every file matches its hash
    return path


def _write_recipe(raw: dict[str, Any], path: Path) -> None:
    import yaml

    from sidbench.fileio import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(raw, sort_keys=False))


_BOOTSTRAP = """
import importlib, sys
module = sys.argv[1]
if module:
    importlib.import_module(module)
from sidbench.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _method_module(method: Any) -> str:
    """The module that defines the method's updates, imported first in the subprocess (it may register it)."""
    module = method.updates[0].fn.__module__ if method.updates else ""
    if module == "__main__":
        raise _Failed("the method is defined in __main__, which a new process cannot import: define it in a "
                      "module and register it under the sidbench.methods entry point")
    return module


def _kill_and_resume(method: Any, recipe: Path, config: Any, outdir: Path, after_step: int, until_step: int,
                     reference: Path) -> str:
    """`sidbench distill` in a subprocess, SIGKILLed between two checkpoints, then resumed to `until_step`."""
    from sidbench.train.checkpoint import list_checkpoints
    from sidbench.train.monitor import LOG, read_jsonl
    from sidbench.train.run import train

    # The same intra-op thread count as this process, which resumes the run: another one sums in
    # another order and changes the last bits.
    env = dict(os.environ, SIDBENCH_NO_PROGRESS="1", OMP_NUM_THREADS=str(torch.get_num_threads()))
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), *filter(None, [env.get("PYTHONPATH")])])
    argv = [sys.executable, "-c", _BOOTSTRAP, _method_module(method), "distill", str(recipe), "--outdir",
            str(outdir), "--resume", "none", "--device", "cpu"]
    log = outdir.parent / f"{outdir.name}.stderr"
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
    killed_at = None
    t0 = time.perf_counter()
    try:
        while proc.poll() is None and time.perf_counter() - t0 < KILL_TIMEOUT_S:
            steps = [int(r.get("step", 0)) for r in read_jsonl(outdir / LOG)]
            if steps and max(steps) > after_step and any(p.name == f"step-{after_step:08d}"
                                                          for p in list_checkpoints(outdir)):
                os.kill(proc.pid, signal.SIGKILL)
                killed_at = max(steps)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and killed_at is None:
            proc.kill()
        proc.wait()
    if killed_at is None:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        why = "it timed out" if proc.returncode is None \
            else f"it exited with {proc.returncode} before step {after_step + 1}"
        raise _Failed(f"could not kill the run between checkpoints: {why}" + (f": {tail[0]}" if tail else ""))
    result = train(config, outdir, resume="auto", progress=False, max_steps=until_step)
    if result.resumed_from is None:
        raise _Failed("--resume auto found no checkpoint to resume from")
    same = _compare(result.checkpoint, reference, "resumed run vs uninterrupted run")
    return (f"killed (SIGKILL) at step {killed_at}, resumed from {result.resumed_from.name}, "
            f"step {until_step}: {same}")


def _generator_fd(suite: Any, render: Any, path: Path, record_fd: float | None,
                  captions: Sequence[str] | None = None) -> float:
    """FD of FD_IMAGES rendered images as `eval --generator` scores it; it must equal the run's own."""
    from sidbench.metrics.evaluate import evaluate
    from sidbench.metrics.image_source import GeneratorImageSource
    from sidbench.suites.resolve import resolve_suite

    ref = resolve_suite(suite, need=("ref",)).ref_stats
    images = GeneratorImageSource(render, list(range(FD_IMAGES)), {"generator": str(path)})
    result = evaluate(images, ref=str(ref), metrics=["fid"], protocols=[FD_PROTOCOL], batch_size=250,
                      captions=captions)
    fd = float(result["metrics"]["fid"]["value"])
    if record_fd is not None and not math.isclose(fd, record_fd, rel_tol=1e-4, abs_tol=1e-6):
        raise _Failed(f"eval --generator scores FD {fd:.4g}, the run's own evaluation {record_fd:.4g}: the "
                      "exported product is not the network the run evaluated")
    return fd


def _t2i_loads(path: Path, record: dict[str, Any], record_fd: float | None) -> str:
    """A text-to-image generator: rendered with its teacher's prompts and decoder, caption i with seed i."""
    from sidbench.nets.native import load_network
    from sidbench.nets.t2i import load_t2i_teacher
    from sidbench.nets.t2i_render import onestep_t2i_renderer
    from sidbench.suites import get_suite
    from sidbench.suites.resolve import resolve_suite
    from sidbench.train.evaluation import eval_captions

    suite = get_suite(T2I_SUITE)
    source = record.get("source") or {}
    teacher_path = source.get("teacher_path") or resolve_suite(suite, need=("teacher",)).teacher
    teacher = load_t2i_teacher(teacher_path)
    net = load_network(path)
    t_init = int(source["t_init"])
    captions = eval_captions(suite, FD_IMAGES)
    render = onestep_t2i_renderer(net, teacher, captions, t_init, "cpu")
    if tuple(render(list(range(8))).shape[1:]) != (suite.channels, suite.resolution, suite.resolution):
        raise _Failed("the generator renders images of another shape than the suite's")
    fd = _generator_fd(suite, render, path, record_fd, captions)
    return f"role t2i-generator, t_init {t_init}: renders with its teacher's prompt encoder; FD {fd:.4g} " \
           "(equal to the run's own)"


def _loads(product: Path, record_fd: float | None) -> str:
    """Load the product as `generate` / `eval --generator` do; render; score FD as `eval --generator`."""
    from sidbench.generation import generate
    from sidbench.metrics.image_source import onestep_renderer
    from sidbench.nets.native import DEFAULT_SIGMA_INIT, load_network, read_network_record
    from sidbench.suites import get_suite
    from sidbench.suites.resolve import check_teacher, resolve_network

    path = resolve_network(product)
    record = read_network_record(path)
    if record.get("role") == "t2i-generator":
        return _t2i_loads(path, record, record_fd)
    suite = get_suite(T2I_SUITE if record.get("class_name") == "EpsDenoiser" else SUITE)
    check_teacher(suite, record, where=f"product {path}")
    if suite.name == T2I_SUITE:
        return "role teacher: a text-to-image teacher that loads as a network; sample it with DDIM " \
               "(sidbench generate)"
    net = load_network(path)
    role = record.get("role")
    with tempfile.TemporaryDirectory(prefix="sidbench-validate-") as tmp:
        if role == "generator":
            sigma = float(record.get("sigma_init") or DEFAULT_SIGMA_INIT)
            summary = generate(net, Path(tmp) / "images", list(range(8)), batch_size=8, sampler="onestep",
                               sigma_init=sigma, progress=False)
        else:
            summary = generate(net, Path(tmp) / "images", list(range(8)), batch_size=8, num_steps=4,
                               progress=False)
        written = len(list((Path(tmp) / "images").glob("*.png")))
    if written != 8:
        raise _Failed(f"generate wrote {written} of 8 images")
    if role != "generator":
        return f"role {role}: loads and samples with Heun ({summary.nfe} NFE); eval --generator is for " \
               "generators"
    fd = _generator_fd(suite, onestep_renderer(net, sigma, "cpu"), path, record_fd)
    return f"role generator, sigma_init {sigma:g}: 8 images generated; eval --generator FD {fd:.4g} " \
           "(equal to the run's own)"


def _fd_of(records: list[dict[str, Any]], step: int) -> float | None:
    for rec in records:
        if int(rec.get("step", -1)) == step:
            value = rec.get("metrics", {}).get("fid", {}).get("value")
            return float(value) if value is not None else None
    return None


# -------------------------------------------------------------------------------- entry ----

@contextlib.contextmanager
def _workdir(outdir: str | os.PathLike | None) -> Iterator[Path]:
    if outdir is not None:
        path = Path(outdir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    tmp = Path(tempfile.mkdtemp(prefix="sidbench-validate-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def validate_method(method_name: str, *, outdir: str | os.PathLike | None = None, steps: int = 40,
                    overrides: Sequence[str] = (), progress: bool = True) -> ValidationResult:
    """Run the checklist of the module docstring for registered method `method_name`.

    outdir keeps every run (main/, repeat/, killed/ and their recipe files); default: a temporary
    folder, removed. overrides: `key=value` settings applied to the validation recipe (e.g.
    `method_settings.generator_start_kimg=0` for a method whose generator waits 100 kimg); an
    unknown key raises ConfigError before any check runs.
    """
    from sidbench.train.config import apply_overrides, load_recipe
    from sidbench.train.run import train

    method = METHODS.get(method_name)
    # Bad overrides are bad arguments: refused here, before any check runs.
    raw = apply_overrides(validation_recipe(method.name, steps, evaluate=False), list(overrides))
    state: dict[str, Any] = {"raw": raw, "quiet": load_recipe(raw),  # the same training, no evaluation
                             "config": load_recipe(apply_overrides(validation_recipe(method.name, steps),
                                                                   list(overrides)))}
    result = ValidationResult(method=method.name, version=str(method.version), steps=steps,
                              outdir=Path(outdir) if outdir is not None else None)
    checklist = _Checklist(result, progress)
    every = checkpoint_every(steps)
    with _workdir(outdir) as work:
        for sub in ("main", "repeat", "killed"):  # validate's own folders: a kept outdir starts clean
            shutil.rmtree(work / sub, ignore_errors=True)

        def builds() -> str:
            train(state["config"], work / "main", resume=None, dry_run=True, progress=False)
            detail, state["misuse"] = _smoke(state["config"], method)
            return detail

        def draws() -> str:
            if state["misuse"]:
                raise _Failed("; ".join(state["misuse"]) + ": draw from ctx.draws instead")
            return "no update touched the global torch, numpy or random RNG"

        def finite() -> str:
            main = state["main"] = train(state["config"], work / "main", resume=None, progress=progress)
            return _finite_log(main.outdir)

        def repeat() -> str:
            again = train(state["quiet"], work / "repeat", resume=None, progress=False, max_steps=every)
            return f"step {every}: " + _compare(again.checkpoint, _checkpoint(work / "main", every),
                                                "second run vs first run")

        def kill() -> str:
            recipe = work / "killed.yaml"
            _write_recipe(state["raw"], recipe)
            until = min(steps, 2 * every)
            return _kill_and_resume(method, recipe, state["quiet"], work / "killed", every, until,
                                    _checkpoint(work / "main", until))

        def loads() -> str:
            main = state["main"]
            return _loads(main.product, _fd_of(main.records, main.steps))

        def improves() -> str:
            main = state["main"]
            before, after = _fd_of(main.records, 0), _fd_of(main.records, main.steps)
            if before is None or after is None:
                raise _Failed("the run did not evaluate FD at kimg 0 and at the end")
            if not after < before:
                raise _Failed(f"FD {before:.4g} -> {after:.4g} after {main.steps} steps: no improvement")
            return f"FD {before:.4g} -> {after:.4g} ({FD_PROTOCOL}, {FD_IMAGES} images, {main.steps} steps)"

        for name, fn in zip(CHECK_NAMES, (builds, draws, finite, repeat, kill, loads, improves), strict=True):
            checklist.run(name, fn)
    return result
