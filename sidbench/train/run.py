"""`train(config, outdir)`: the one training loop of every method, resumable to the same bits.

It resolves the suite's teacher and dataset (checked against the suite), builds the
networks, resumes from the newest valid checkpoint when asked, then runs steps until
`training.duration_kimg`, writing checkpoints every `checkpoint_kimg` and at the end,
evaluating the EMA product every `eval_kimg` (and at kimg 0), and logging every
`log_every_kimg`. Everything random is derived from (seed, step, ...) (see
`sidbench.train.seeds`), so a run killed at any moment and resumed ends with the same
weights, bit for bit on the CPU, as one that was never interrupted.

Run folder: `config.json` (resolved config and hash), `checkpoints/step-XXXXXXXX/`,
`metrics.jsonl` (one result record per evaluation), `log.jsonl`.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import sidbench.distributed as distributed
from sidbench.errors import AssetError, ConfigError
from sidbench.fileio import atomic_write_text, check_output_path
from sidbench.jsonsafe import dumps
from sidbench.train import checkpoint as ckpt
from sidbench.train.config import RunConfig
from sidbench.train.data import Prefetcher, TrainingData, open_training_data
from sidbench.train.evaluation import METRICS, Evaluator, append_record
from sidbench.train.monitor import LOG, Monitor, read_jsonl, truncate_jsonl
from sidbench.train.networks import Networks, build_networks, resolve_init_generator, teacher_needed
from sidbench.train.optim import load_state, state_tensors
from sidbench.train.processes import barrier, close_processes, init_processes, run_device
from sidbench.train.steps import Stepper

CONFIG = "config.json"


@dataclass
class RunResult:
    """What `train` did: where everything is, how far it got, and the run's metric records."""

    outdir: Path
    steps: int
    kimg: float
    checkpoint: Path | None  # the newest checkpoint folder
    product: Path | None  # its native network folder (generate / eval --generator load it)
    records: list[dict[str, Any]] = field(default_factory=list)  # every row of metrics.jsonl
    wall_time_s: float = 0.0
    finished: bool = False  # reached training.duration_kimg
    resumed_from: Path | None = None
    dry_run: bool = False
    config_hash: str = ""
    plan: dict[str, Any] = field(default_factory=dict)  # what was resolved: teacher, dataset, evaluation
    skipped_updates: int = 0


def _crossed(step: int, batch: int, every_kimg: float | None) -> bool:
    """Did the images seen pass a multiple of `every_kimg` during step `step` (counted from 1)?"""
    if every_kimg is None or step <= 0:
        return False
    every = every_kimg * 1000.0
    return int(step * batch // every) > int((step - 1) * batch // every)


def _product_sigma(method: Any, settings: Any) -> float | None:
    if method.product_role != "generator":
        return None
    value = getattr(settings, "sigma_init", None)
    return float(value) if value is not None else None


def _product_levels(method: Any, settings: Any) -> list[float] | None:
    """A multi-step student's noise levels (settings' `student_sigmas`, ADD-style), for its network.json."""
    value = getattr(settings, "student_sigmas", None) if method.product_role == "generator" else None
    return [float(v) for v in value] if value is not None else None


# ----------------------------------------------------------------------------- resolution ----

def _resolve(config: RunConfig, method: Any) -> dict[str, Any]:
    """Teacher, dataset, init generator: located and checked against the suite (no training state)."""
    from sidbench.nets.native import read_network_record
    from sidbench.suites.resolve import resolve_suite

    suite = config.get_suite()
    training = config.training
    plan: dict[str, Any] = {"suite": suite.name, "method": method.name}
    teacher = None
    needed = teacher_needed(config, method)
    if needed or training.architecture is None:
        try:
            teacher = resolve_suite(suite, teacher=training.teacher, need=("teacher",)).teacher
        except AssetError as exc:
            if needed:
                raise
            raise ConfigError(f"method {method.name} trains from scratch and takes its architecture from the "
                              f"teacher, but {exc.message}",
                              hint="set training.architecture to a network config {class_name, init_kwargs}"
                              ) from None
        plan["teacher"] = {"path": str(teacher), "sha256": _teacher_sha(suite, teacher), "loaded": needed}
    plan["teacher_path"] = str(teacher) if teacher is not None else None
    if training.prompts is not None:  # read now, so a dry run names a bad caption list
        from sidbench.data.captions import read_prompts

        plan["prompts"] = read_prompts(training.prompts).describe()
    if needed and suite.settings.get("text_to_image"):  # what the real run would stop at, said now
        from sidbench.nets.eps_unet import import_diffusers, import_transformers
        from sidbench.train.conditioning import open_prompts

        import_diffusers()
        import_transformers()
        if training.prompts is None and open_prompts(suite, None)[0] is None:
            raise ConfigError(f"suite {suite.name} has no built-in training prompts",
                              hint="set training.prompts to a caption list (.txt, .json or COCO annotations)")
    if training.init_generator is not None:
        folder = resolve_init_generator(training.init_generator)
        digest = read_network_record(folder)["weights_sha256"]
        plan["init_generator"] = {"path": str(folder), "sha256": digest}
    return plan


def _teacher_sha(suite: Any, teacher: Path) -> str | None:
    """The teacher's weights sha256 (a diffusers folder is checked here and hashed when loaded)."""
    from sidbench.nets.native import read_network_record

    if suite.settings.get("text_to_image"):
        from sidbench.nets.sd15 import check_sd15_folder
        from sidbench.nets.t2i import is_diffusers_folder

        if is_diffusers_folder(teacher) or suite.settings.get("teacher_format") == "diffusers":
            check_sd15_folder(teacher)
            return None
    return read_network_record(teacher)["weights_sha256"]


def _check_outdir(outdir: Path, config_hash: str) -> None:
    path = outdir / CONFIG
    if not path.is_file():
        return
    import json

    try:
        found = json.loads(path.read_text(encoding="utf-8")).get("config_hash")
    except (ValueError, AttributeError, UnicodeDecodeError):
        found = None
    if found != config_hash:
        raise ConfigError(f"{outdir} holds a run of another config (hash {str(found)[:12]}..., this one "
                          f"{config_hash[:12]}...)", hint="use another --outdir, or the recipe and --set "
                                                          "options that run was started with")


def _pick_checkpoint(outdir: Path, resume: str | os.PathLike | None, config_hash: str
                     ) -> tuple[Path, dict[str, Any]] | None:
    if resume is None:
        existing = ckpt.list_checkpoints(outdir)
        if existing:
            raise ConfigError(f"{outdir} already holds checkpoints of this run (newest {existing[0].name})",
                              hint="continue it with --resume auto, or choose another --outdir")
        return None
    if str(resume) == "auto":
        found = ckpt.newest_valid(outdir)
        if found is None and ckpt.list_checkpoints(outdir):
            warnings.warn(f"{outdir}: no valid checkpoint to resume from; starting from step 0", stacklevel=3)
    else:
        path = Path(resume).expanduser()
        found = (path.parent if path.name == ckpt.STATE else path, ckpt.read_state(path))
    if found is not None and found[1].get("config_hash") != config_hash:
        theirs = str(found[1].get("config_hash"))[:12]
        raise ConfigError(f"checkpoint {found[0]} belongs to a run of another config "
                          f"(hash {theirs}..., this one {config_hash[:12]}...)",
                          hint="resume it with the config.json of its run folder, or start a new --outdir")
    return found


# ------------------------------------------------------------------------------------ run ----

class _Run:
    def __init__(self, config: RunConfig, outdir: Path, device: torch.device, progress: bool,
                 max_steps: int | None):
        self.config, self.outdir, self.device = config, outdir, device
        self.method = config.get_method()
        self.suite = config.get_suite()
        self.training = config.training
        self.progress, self.max_steps = progress, max_steps
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.main = self.rank == 0
        self.hash = config.config_hash()
        self.batch = self.training.batch
        self.total_steps = self.training.total_steps
        self.training.rounds(self.world)  # refuses a batch that does not split

    # --- pieces -----------------------------------------------------------------------------------
    def _networks(self, plan: dict[str, Any]) -> Networks:
        from sidbench.nets.native import read_network_config

        needed = teacher_needed(self.config, self.method)
        found = plan.get("teacher_path")
        native = found and (Path(found) / "network.json").is_file()  # not a diffusers folder
        arch = read_network_config(found) if native and self.training.architecture is None else None
        return build_networks(self.config, self.method, self.device, found if needed else None, arch)

    def _shape(self, nets: Networks) -> tuple[tuple[int, int, int], int]:
        net = nets.nets[self.method.product]
        c, r = int(net.img_channels), int(net.img_resolution)
        return (c, r, r), int(net.label_dim or 0)

    def _product(self, nets: Networks) -> torch.nn.Module:
        name = self.method.product
        return nets.emas[name].net if name in nets.emas else nets.nets[name]

    def _state(self, step: int, stepper: Stepper, nets: Networks, elapsed: float) -> dict[str, Any]:
        nimg = step * self.batch
        return {"kimg": nimg / 1000, "nimg": nimg, "data_position": nimg,
                "config_hash": self.hash, "config": self.config.resolved(), "guard": stepper.guard.state(),
                "wall_time_s": round(elapsed, 3), "world_size": self.world,
                "batch_per_gpu": self.training.micro_batch(self.world), "teacher": nets.teacher_info,
                "init_generator": nets.init_generator, "torch": torch.__version__}

    def _write_checkpoint(self, step: int, stepper: Stepper, nets: Networks, elapsed: float) -> Path:
        from sidbench.nets.native import save_network

        path = ckpt.checkpoint_path(self.outdir, step)
        if self.main:
            modules = dict(nets.nets)
            modules.update({f"{n}-ema": e.net for n, e in nets.emas.items()})
            tensors, meta = state_tensors(stepper.optimizers)
            name = self.method.product
            source = {"trained_by": "sidbench.train", "method": self.method.name,
                      "method_version": self.method.version, "suite": self.suite.name, "step": step,
                      "kimg": step * self.batch / 1000, "config_hash": self.hash,
                      "teacher_sha256": nets.teacher_info.get("sha256"),
                      "weights": f"{name}-ema" if name in nets.emas else name}
            if self.method.product_role == "t2i-generator":  # what generate / eval need to sample it
                source.update({"t_init": int(self.config.method_settings.t_init),
                               "teacher_path": nets.teacher_info.get("path")})

            def product(folder: Path) -> None:
                save_network(self._product(nets), nets.configs[name], folder, source=source,
                             role=self.method.product_role,
                             sigma_init=_product_sigma(self.method, self.config.method_settings),
                             student_sigmas=_product_levels(self.method, self.config.method_settings))

            path = ckpt.write_checkpoint(self.outdir, step, networks=modules, optimizer_tensors=tensors,
                                         optimizer_meta=meta, state=self._state(step, stepper, nets, elapsed),
                                         write_product=product)
            ckpt.prune(self.outdir, self.training.keep_checkpoints)
        barrier()
        return path

    def _load_checkpoint(self, folder: Path, state: dict[str, Any], stepper: Stepper, nets: Networks) -> None:
        for name, net in nets.nets.items():
            ckpt.load_module(net, folder, name)
        for name, ema in nets.emas.items():
            ckpt.load_module(ema.net, folder, f"{name}-ema")
        tensors = ckpt.read_tensors(folder, ckpt.OPTIMIZER_TENSORS)
        import json

        meta = json.loads((folder / ckpt.OPTIMIZER_META).read_text(encoding="utf-8"))
        load_state(stepper.optimizers, tensors, meta, str(folder))
        stepper.guard.load(state.get("guard", {}))

    def _evaluate(self, evaluator: Evaluator, step: int, nets: Networks, elapsed: float,
                  checkpoint: Path | None, monitor: Monitor) -> None:
        from sidbench.fileio import sha256_file

        product = self._product(nets)
        networks: dict[str, Any] = {"teacher_sha256": nets.teacher_info.get("sha256"),
                                    "init_generator_sha256": (nets.init_generator or {}).get("sha256")}
        if checkpoint is not None:
            networks.update({"checkpoint": str(checkpoint),
                             "checkpoint_sha256": sha256_file(checkpoint / ckpt.STATE),
                             "generator_sha256": _weights_sha(checkpoint / ckpt.PRODUCT)})
        cost = {"train_seconds": round(elapsed, 2),
                "device_hours": round(elapsed * self.world / 3600, 4)}
        sigma_init = _product_sigma(self.method, self.config.method_settings)
        record = evaluator.evaluate(product, sigma_init=sigma_init, step=step, kimg=step * self.batch / 1000,
                                    networks=networks, cost=cost, world=self.world)
        if self.main:
            append_record(self.outdir, record)
            values = {k: v["value"] for k, v in record["metrics"].items()
                      if isinstance(v.get("value"), float)}
            monitor.metrics(step, values)
        barrier()

    # --- the loop ---------------------------------------------------------------------------------
    def execute(self, resume: str | os.PathLike | None, plan: dict[str, Any]) -> RunResult:
        t_start = time.perf_counter()
        found = _pick_checkpoint(self.outdir, resume, self.hash)
        barrier()
        if self.main:
            atomic_write_text(self.outdir / CONFIG, dumps({"config_hash": self.hash,
                                                           "config": self.config.resolved()}) + "\n")
        nets = self._networks(plan)
        img_shape, label_dim = self._shape(nets)
        data: TrainingData = open_training_data(self.suite, self.method, self.training.seed, self.batch,
                                                self.training.dataset)
        plan["data"] = data.describe()
        stepper = Stepper(self.config, self.method, nets, self.device, rank=self.rank, world=self.world,
                          img_shape=img_shape, label_dim=label_dim)
        evaluator = Evaluator(self.config, self.method, self.device, self.method.product_role) \
            if self.training.eval_kimg is not None else None
        if evaluator is not None:
            evaluator.t2i = nets.t2i
            plan["evaluation"] = evaluator.plan()
        _check_memory(stepper, data, self.device)

        start, elapsed_before, resumed_from = 0, 0.0, None
        if found is not None:
            folder, state = found
            self._load_checkpoint(folder, state, stepper, nets)
            start, resumed_from = int(state["step"]), folder
            elapsed_before = float(state.get("wall_time_s", 0.0))
        if self.main:
            truncate_jsonl(self.outdir / LOG, start if found is not None else -1)
            truncate_jsonl(self.outdir / METRICS, start if found is not None else -1)
        barrier()
        stop = self.total_steps if self.max_steps is None else min(self.total_steps, int(self.max_steps))
        monitor = Monitor(self.outdir, total_steps=self.total_steps, batch=self.batch, start_step=start,
                          active=self.main, progress=self.progress, tensorboard=self.training.tensorboard,
                          name=self.config.name)
        prefetch = Prefetcher(data, stepper.rank_indices)
        t_loop = time.perf_counter()
        last_ckpt = resumed_from
        evaluated = {int(r.get("step", -1)) for r in read_jsonl(self.outdir / METRICS)}
        log_t, log_step = time.perf_counter(), start

        def elapsed() -> float:
            return elapsed_before + time.perf_counter() - t_loop

        try:
            # kimg 0 (the initial network), or a due evaluation the interrupted run did not get to
            due_at_start = start == 0 or _crossed(start, self.batch, self.training.eval_kimg) \
                or start == self.total_steps
            if evaluator is not None and due_at_start and start not in evaluated:
                self._evaluate(evaluator, start, nets, elapsed_before, last_ckpt, monitor)
                evaluated.add(start)
            step = start
            while step < stop:
                stepper.run_step(step, prefetch.get(step))
                step += 1
                monitor.advance(step)
                final = step == stop
                if _crossed(step, self.batch, self.training.log_every_kimg) or final:
                    now = time.perf_counter()
                    rate = (step - log_step) * self.batch / 1000 / max(now - log_t, 1e-9)
                    monitor.log({"step": step, "kimg": step * self.batch / 1000,
                                 "time_s": round(elapsed(), 3), "kimg_per_s": round(rate, 4),
                                 "terms": stepper.window.means(), "skipped": stepper.window.skipped,
                                 "lr": stepper.learning_rates(step - 1)})
                    stepper.window = type(stepper.window)()
                    log_t, log_step = now, step
                due_eval = evaluator is not None and (_crossed(step, self.batch, self.training.eval_kimg)
                                                      or step == self.total_steps)
                if _crossed(step, self.batch, self.training.checkpoint_kimg) or final or due_eval:
                    last_ckpt = self._write_checkpoint(step, stepper, nets, elapsed())
                if due_eval and step not in evaluated:
                    self._evaluate(evaluator, step, nets, elapsed(), last_ckpt, monitor)
                    evaluated.add(step)
        finally:
            prefetch.close()
            monitor.close()
            data.close()
            if evaluator is not None:
                evaluator.close()
        records = read_jsonl(self.outdir / METRICS)
        return RunResult(outdir=self.outdir, steps=step, kimg=step * self.batch / 1000, checkpoint=last_ckpt,
                         product=last_ckpt / ckpt.PRODUCT if last_ckpt is not None else None, records=records,
                         wall_time_s=round(time.perf_counter() - t_start, 3),
                         finished=step >= self.total_steps,
                         resumed_from=resumed_from, config_hash=self.hash, plan=plan,
                         skipped_updates=stepper.guard.skipped)


def _weights_sha(folder: Path) -> str | None:
    from sidbench.nets.native import read_network_record

    try:
        return read_network_record(folder)["weights_sha256"]
    except Exception:
        return None


def _check_memory(stepper: Stepper, data: TrainingData, device: torch.device) -> None:
    """Refuse a micro-batch whose activations cannot fit beside the weights and optimizer state."""
    from sidbench.train.memory import BatchTooLarge, available_memory, parameter_bytes, per_image_bytes

    available = available_memory(device)
    if available is None:
        return
    nets = stepper.networks
    trainable = [nets.nets[n] for n in stepper.optimizers]
    frozen = [m for n, m in nets.nets.items() if n not in stepper.optimizers]
    frozen += [e.net for e in nets.emas.values()] + ([nets.teacher] if nets.teacher is not None else [])
    fixed = 4 * parameter_bytes(trainable) + parameter_bytes(frozen)
    names = list(dict.fromkeys(n for phase in stepper.phases for n in phase.updates))
    per_image = 0
    for name in names:
        update = stepper.method.update(name)
        stepper._focus(update.network)

        def run(b: int, update: Any = update) -> torch.Tensor:
            import numpy as np

            idx = np.arange(b, dtype=np.int64)
            ctx = stepper.context(0, update.name, 0, idx, data.batch(0, idx))
            return stepper._call(update, ctx).per_sample

        per_image = max(per_image, per_image_bytes(run, device))
    stepper._trained = "?"
    need = fixed + stepper.micro * per_image
    if need > available:
        fit = max(0, (available - fixed) // max(per_image, 1))
        raise BatchTooLarge(stepper.micro, need, per_image, available, fit, str(device),
                            option="training.batch_per_gpu (gradient accumulation keeps training.batch)")


# ------------------------------------------------------------------------------------ API ----

def train(config: RunConfig, outdir: str | os.PathLike, *, resume: str | os.PathLike | None = "auto",
          dry_run: bool = False, progress: bool = True, max_steps: int | None = None,
          device: str | torch.device | None = None) -> RunResult:
    """Train `config` into `outdir`; see the module docstring.

    resume: "auto" (the newest valid checkpoint in outdir, skipping a corrupt one with a
    warning; none: start at step 0), None (start at step 0; refused where checkpoints of
    this run exist), or a checkpoint folder. A folder holding a run of another config hash
    is refused. dry_run: resolve and check every asset (teacher, dataset, init generator,
    reference statistics) and the resume point, then return without training.
    max_steps: stop after that step (counted from the run's start) as if killed cleanly
    right after writing a checkpoint there. device: default cuda (cuda:LOCAL_RANK under
    torchrun) when available, else cpu.
    """
    if not isinstance(config, RunConfig):
        raise ConfigError(f"train() takes a RunConfig, not a {type(config).__name__}",
                          hint="build one with sidbench.train.config.load_recipe")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int)
                                  or max_steps < 1):
        raise ConfigError(f"max_steps must be a whole number >= 1, got {max_steps!r}")
    out = check_output_path(outdir, kind="dir", option="outdir")
    method = config.get_method()
    config_hash = config.config_hash()
    _check_outdir(out, config_hash)
    dev = run_device(device)
    plan = _resolve(config, method)
    plan["precision"] = config.training.precision
    if config.training.precision == "fp16" and dev.type != "cuda":
        plan["precision"] = "fp32 (fp16 is EDM's network-level fp16, which runs on CUDA only)"
        warnings.warn(f"training.precision fp16 runs in float32 on {dev.type}: EDM's use_fp16 acts on "
                      "CUDA only",
                      stacklevel=2)
    if dry_run:
        found = _pick_checkpoint(out, resume, config_hash)
        data = open_training_data(config.get_suite(), method, config.training.seed, config.training.batch,
                                  config.training.dataset)
        plan["data"] = data.describe()
        data.close()
        if config.training.eval_kimg is not None:
            evaluator = Evaluator(config, method, dev, method.product_role)
            plan["evaluation"] = evaluator.plan()
            evaluator.close()
        plan["resume"] = str(found[0]) if found is not None else None
        plan["total_steps"] = config.training.total_steps
        plan["device"] = str(dev)
        return RunResult(outdir=out, steps=0, kimg=0.0, checkpoint=None, product=None, dry_run=True,
                         config_hash=config_hash, plan=plan,
                         records=read_jsonl(out / METRICS))
    out.mkdir(parents=True, exist_ok=True)
    opened = init_processes(dev)
    try:
        return _Run(config, out, dev, progress, max_steps).execute(resume, plan)
    finally:
        close_processes(opened)
