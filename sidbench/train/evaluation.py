"""Periodic evaluation: the product network scored under the suite's protocols at fixed kimg.

Each evaluation renders seeds 0..N-1 from the EMA product on the fly (a one-step
generator as `eval --generator` does; a teacher with the suite's Heun sampler),
computes every metric through `sidbench.metrics.evaluate`, and becomes one result
record (`sidbench.records`) appended to the run's `metrics.jsonl`, so the FID-vs-kimg
curve of a run is its metrics file. Extractors and reference statistics are loaded once.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import torch

from sidbench.errors import AssetError, ConfigError
from sidbench.fileio import atomic_write_text, sha256_file
from sidbench.jsonsafe import dumps
from sidbench.train.config import RunConfig
from sidbench.train.monitor import read_jsonl

METRICS = "metrics.jsonl"


def _needs(metric: str, what: tuple[str, ...]) -> bool:
    """Whether a registered metric's `reference` kind is one of `what` ("stats", "features")."""
    from sidbench.metrics.catalog import get_metric

    return get_metric(metric).reference in what


def append_record(outdir: str | os.PathLike, record: dict[str, Any]) -> None:
    """Add one record to metrics.jsonl (the small file is rewritten atomically)."""
    path = Path(outdir) / METRICS
    rows = read_jsonl(path)
    atomic_write_text(path, "".join(dumps(r, indent=None) + "\n" for r in [*rows, record]))


def eval_captions(suite: Any, count: int) -> list[str]:
    """A text-to-image suite's evaluation captions: the built-in list, or its pinned caption asset."""
    from sidbench.data.captions import builtin_prompts

    source = suite.settings.get("eval_captions") or suite.settings.get("captions_asset")
    if isinstance(source, str) and source.startswith("builtin:"):
        return list(builtin_prompts(source.removeprefix("builtin:"), count))
    from sidbench.assets import resolve_asset
    from sidbench.data.coco import read_captions

    captions = read_captions(resolve_asset(str(source)))
    if len(captions) < count:
        raise ConfigError(f"{count:,} evaluation images but only {len(captions):,} captions",
                          hint="caption i is rendered with seed i; evaluate at most as many images "
                               "as captions")
    return list(captions[:count])


class Evaluator:
    """Scores the product network of a run; `plan()` says what it will use, without computing."""

    def __init__(self, config: RunConfig, method: Any, device: torch.device, product_role: str):
        from sidbench.metrics.protocols import get_protocol

        self.config, self.method, self.device, self.role = config, method, device, product_role
        self.suite = config.get_suite()
        ev = config.training.eval
        self.protocols = list(ev.protocols or self.suite.protocols)
        if not self.protocols:
            raise ConfigError(f"training.eval_kimg is set, but suite {self.suite.name} has no protocols",
                              hint="set training.eval.protocols, or training.eval_kimg=null")
        self.text_to_image = bool(self.suite.settings.get("text_to_image"))
        if self.text_to_image and product_role not in ("t2i-generator", "teacher"):
            raise ConfigError(f"suite {self.suite.name} is text-to-image: method {method.name}'s "
                              f"{product_role} has no text-to-image sampler",
                              hint="set training.eval_kimg=null")
        if product_role not in ("generator", "teacher", "t2i-generator"):
            raise ConfigError(f"method {method.name}'s product is a '{product_role}' network, which has no "
                              "sampler to evaluate", hint="set training.eval_kimg=null")
        chosen = {get_protocol(name).metric: get_protocol(name) for name in self.protocols}
        self.metrics = list(chosen)
        self.num_images = ev.num_images or int(self.suite.settings.get("num_eval_images") or 0) or \
            min(p.num_images for p in chosen.values())
        self.batch_size = ev.batch_size
        self._chosen = chosen
        self.ref_stats: Path | None = None
        self.ref_images: Any = None
        self._extractors: dict[str, Any] | None = None
        self.t2i: Any = None  # the run's T2ITeacher (prompt encoder, decoder), set by the trainer
        self._captions: Any = None

    def captions(self) -> Any:
        """Caption i of evaluation image i (text-to-image suites), read once."""
        if self._captions is None and self.text_to_image:
            self._captions = eval_captions(self.suite, self.num_images)
        return self._captions

    def plan(self) -> dict[str, Any]:
        """Find (and check) the reference statistics and images; what a dry run reports."""
        from sidbench.suites.resolve import check_suite_dataset, resolve_suite

        if any(_needs(m, ("stats", "features")) for m in self.metrics) and self.ref_stats is None:
            self.ref_stats = resolve_suite(self.suite, need=("ref",)).ref_stats
        if any(_needs(m, ("features",)) for m in self.metrics) and self.ref_images is None \
                and self.suite.dataset.num_images > 0:
            with contextlib.suppress(AssetError):  # evaluate() then says which images KID / P-R need
                self.ref_images = check_suite_dataset(self.suite)
        if self.text_to_image:
            self.captions()
        return {"protocols": self.protocols, "metrics": self.metrics, "num_images": self.num_images,
                "reference_stats": str(self.ref_stats) if self.ref_stats else None}

    def _render(self, net: torch.nn.Module, sigma_init: float | None):
        from sidbench.metrics.image_source import onestep_renderer

        if self.role == "t2i-generator":
            from sidbench.nets.t2i_render import onestep_t2i_renderer

            if self.t2i is None:
                raise ConfigError("a text-to-image evaluation needs the run's teacher "
                                  "(prompt encoder, decoder)")
            t_init = int(self.config.method_settings.t_init)
            return onestep_t2i_renderer(net, self.t2i, self.captions(), t_init, self.device)
        if self.text_to_image:  # a teacher being trained: DDIM with guidance, its own text encoder
            from sidbench.nets.t2i import teacher_view
            from sidbench.nets.t2i_render import ddim_t2i_renderer

            sampler = self.suite.settings.get("teacher_sampler") or {}
            return ddim_t2i_renderer(teacher_view(net), self.captions(), int(sampler.get("num_steps", 25)),
                                     float(sampler.get("guidance", 1.0)), self.device)
        if self.role == "generator":
            return onestep_renderer(net, sigma_init if sigma_init is not None else 2.5, self.device)
        from sidbench.nets.render import render_seeds

        t = self.suite.teacher
        heun = {"num_steps": t.heun_steps, "sigma_min": t.sigma_min, "sigma_max": t.sigma_max, "rho": t.rho}

        def render(seeds):
            return torch.from_numpy(render_seeds(net, seeds, "heun", self.device, heun=heun))

        return render

    def evaluate(self, net: torch.nn.Module, *, sigma_init: float | None, step: int, kimg: float,
                 networks: dict[str, Any], cost: dict[str, Any], world: int) -> dict[str, Any]:
        """One result record for `net` (in eval mode) at `step`."""
        from sidbench.environment import environment
        from sidbench.metrics.evaluate import evaluate
        from sidbench.metrics.extractors import build_extractor
        from sidbench.metrics.image_source import GeneratorImageSource
        from sidbench.records import result_record

        self.plan()
        if self._extractors is None:
            self._extractors = {p.extractor: build_extractor(p.extractor, None, self.device)
                                for p in self._chosen.values()}
        t0 = time.perf_counter()
        was_training = net.training
        net.eval()
        info = {"generator": f"step {step}", "sigma_init": sigma_init, "role": self.role}
        if self.text_to_image:  # caption i with seed i: which list, and the generator's t_init
            from sidbench.data.captions import captions_sha256

            captions = self.captions()
            info = {"generator": f"step {step}", "role": self.role,
                    "t_init": getattr(self.config.method_settings, "t_init", None),
                    "captions_count": len(captions),
                    "captions_sha256": captions_sha256(captions)}
        source = GeneratorImageSource(self._render(net, sigma_init), range(self.num_images), info)
        try:
            with torch.no_grad():
                result = evaluate(source, str(self.ref_stats) if self.ref_stats else None, self.metrics,
                                  self.protocols, ref_images=self.ref_images, extractors=self._extractors,
                                  captions=self.captions(),
                                  batch_size=self.batch_size, device=self.device)
        finally:
            net.train(was_training)
        seconds = time.perf_counter() - t0
        if self.ref_stats is not None:
            networks = {**networks, "reference_stats_sha256": sha256_file(self.ref_stats)}
        return result_record(
            suite={"name": self.suite.name, "version": self.suite.version},
            method={"name": self.method.name, "version": self.method.version, "nfe": self._nfe(),
                    "label": self.config.name, "config_hash": self.config.config_hash(),
                    "role": "teacher" if self.role == "teacher" else "generator"},
            metrics=result["metrics"], networks=networks,
            environment={**environment(), "device": str(self.device), "processes": world,
                         "batch_per_gpu": self.config.training.micro_batch(world)},
            cost={**cost, "evaluate_seconds": round(seconds, 2)},
            extra={"step": step, "kimg": kimg, "config_hash": self.config.config_hash(),
                   "images": result["images"], "run": self.config.name})

    def _nfe(self) -> int:
        if self.role in ("generator", "t2i-generator"):
            return 1
        if self.text_to_image:
            from sidbench.nets.t2i_render import ddim_nfe

            sampler = self.suite.settings.get("teacher_sampler") or {}
            return ddim_nfe(sampler.get("num_steps", 25), sampler.get("guidance", 1.0))
        return 2 * self.suite.teacher.heun_steps - 1

    def close(self) -> None:
        if self.ref_images is not None and hasattr(self.ref_images, "close"):
            self.ref_images.close()
