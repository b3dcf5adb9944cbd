"""One training step of any method: its phase's updates in order, each over every accumulation round.

For each update the trainer puts the updated network in train mode with gradients on
and every other network in eval mode with gradients off (a method may change modes
inside its update), then per micro-batch: builds the per-sample draws, reseeds the
global RNG that dropout uses from (seed, step, update, process, round), runs the update
under the run's autocast, and backpropagates `per_sample.sum() * scale / global_batch`.
Gradients are summed over rounds and processes, the NaN guard looks at the global loss,
and a finite update is sanitised, clipped and applied, then the network's EMA follows.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sidbench.errors import ConfigError
from sidbench.methods.base import Draws, LossOutput, Phase, UpdateContext
from sidbench.train.config import RunConfig
from sidbench.train.data import Batch
from sidbench.train.guard import NanGuard
from sidbench.train.networks import Networks
from sidbench.train.optim import learning_rate, make_optimizer, prepare_gradients, set_learning_rate
from sidbench.train.processes import sum_gradients, sum_values
from sidbench.train.seeds import DRAWS, DROPOUT, sample_generators, scalar_seed


def global_indices(round_: int, rank: int, world: int, micro: int) -> np.ndarray:
    """Global sample indices of (accumulation round, process): round-major, then process."""
    start = (round_ * world + rank) * micro
    return np.arange(start, start + micro, dtype=np.int64)


def phase_at(phases: tuple[Phase, ...], kimg: float) -> Phase:
    """The phase a step that starts at `kimg` belongs to."""
    for phase in phases:
        if phase.until_kimg is None or kimg < phase.until_kimg:
            return phase
    return phases[-1]


@dataclass
class WindowStats:
    """Loss sums between two log lines: name -> (sum over samples, samples)."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    skipped: int = 0

    def add(self, name: str, total: float, count: int) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + total
        self.counts[name] = self.counts.get(name, 0) + count

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums if self.counts[k]}


class Stepper:
    """Runs steps of `method` on the given networks; owns the optimizers."""

    def __init__(self, config: RunConfig, method: Any, networks: Networks, device: torch.device, *,
                 rank: int, world: int, img_shape: tuple[int, int, int], label_dim: int):
        self.config, self.method, self.networks, self.device = config, method, networks, device
        self.training = config.training
        self.rank, self.world = rank, world
        self.micro = self.training.micro_batch(world)
        self.rounds = self.training.rounds(world)
        self.batch = self.training.batch
        self.img_shape, self.label_dim = img_shape, label_dim
        self.settings = config.method_settings
        self.phases = tuple(method.phases(self.settings))
        if not self.phases:
            raise ConfigError(f"method {method.name} declares no phases",
                              hint="a method needs at least one phase")
        self.update_index = {u.name: i for i, u in enumerate(method.updates)}
        for phase in self.phases:
            for name in phase.updates:
                update = method.update(name)
                if update.network not in networks.nets:
                    raise ConfigError(f"method {method.name}: update {name} trains '{update.network}', "
                                      "which is not one of its networks")
        trainable = [s.name for s in method.networks if s.trainable]
        # A build hook may freeze parts of a trainable network (ADD's feature network): only the
        # parameters left trainable are optimised and toggled.
        self.params = {n: [p for p in networks.nets[n].parameters() if p.requires_grad] for n in trainable}
        self.optimizers = {n: make_optimizer(self.params[n], self.training.networks[n]) for n in trainable}
        self.guard = NanGuard(self.training.nan_guard)
        self.window = WindowStats()
        self._indices = [global_indices(a, rank, world, self.micro) for a in range(self.rounds)]
        self._trained: str | None = "?"
        if self.training.precision == "bf16":
            self._autocast = lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        else:
            self._autocast = contextlib.nullcontext

    @property
    def rank_indices(self) -> np.ndarray:
        """Every global index this process reads in one step (all its rounds)."""
        return np.concatenate(self._indices)

    def _focus(self, name: str) -> None:
        """`name` trains (train mode, gradients on); every other network is frozen in eval mode."""
        for other, net in self.networks.nets.items():
            net.train(other == name)
            if other in self.params and self._trained != name:
                for p in self.params[other]:
                    p.requires_grad_(other == name)
        if self.networks.teacher is not None:
            self.networks.teacher.eval()
        self._trained = name

    def context(self, step: int, update: str, round_: int, indices: np.ndarray, data: Batch) -> UpdateContext:
        images, labels = data
        to = {"device": self.device, "non_blocking": True}
        return UpdateContext(
            nets=self.networks.for_update(), settings=self.settings,
            draws=Draws(sample_generators(self.training.seed, step, DRAWS, self.update_index[update],
                                          indices), self.device),
            labels=labels.to(**to) if labels is not None else None,
            images=images.to(**to) if images is not None else None,
            img_shape=self.img_shape, label_dim=self.label_dim, kimg=step * self.batch / 1000, step=step,
            micro_batch=len(indices), global_batch=self.batch, conditioning=self.networks.conditioning)

    def _call(self, update: Any, ctx: UpdateContext) -> LossOutput:
        with self._autocast():
            out = update.fn(ctx)
        if not isinstance(out, LossOutput):
            raise ConfigError(f"update {update.name} of method {self.method.name} returned "
                              f"{type(out).__name__}, not a LossOutput")
        if tuple(out.per_sample.shape) != (ctx.micro_batch,):
            raise ConfigError(f"update {update.name} of method {self.method.name} returned per_sample of "
                              f"shape {tuple(out.per_sample.shape)}, expected ({ctx.micro_batch},)")
        return out

    def _slice(self, data: Batch, round_: int) -> Batch:
        lo, hi = round_ * self.micro, (round_ + 1) * self.micro
        return tuple(None if t is None else t[lo:hi] for t in data)  # type: ignore[return-value]

    def run_update(self, step: int, name: str, data: Batch) -> bool:
        """One update over every round; returns whether it was applied (finite loss)."""
        update = self.method.update(name)
        net_name = update.network
        self._focus(net_name)
        opt = self.optimizers[net_name]
        opt.zero_grad(set_to_none=True)
        sums: list[torch.Tensor] = []
        term_names: list[str] | None = None
        u_index = self.update_index[name]
        for a in range(self.rounds):
            idx = self._indices[a]
            ctx = self.context(step, name, a, idx, self._slice(data, a))
            torch.manual_seed(scalar_seed(self.training.seed, DROPOUT, step, u_index, self.rank, a))
            out = self._call(update, ctx)
            per = out.per_sample.float() * float(out.scale)
            (per.sum() / self.batch).backward()
            names = sorted(out.terms)
            row = [per.detach().double().sum()] + [out.terms[k].detach().double().sum() for k in names]
            if term_names is None:
                term_names, sums = names, row
            else:
                if names != term_names:
                    raise ConfigError(f"update {name} returned other terms in another micro-batch")
                sums = [s + r for s, r in zip(sums, row, strict=True)]
        sum_gradients(self.params[net_name])
        values = sum_values(torch.stack(sums).to("cpu")).tolist()
        finite = math.isfinite(values[0])
        kimg = step * self.batch / 1000
        self.guard.record(finite, update=name, step=step, kimg=kimg)
        if not finite:
            self.window.skipped += 1
            opt.zero_grad(set_to_none=True)
            return False
        settings = self.training.networks[net_name]
        prepare_gradients(self.params[net_name], settings)
        set_learning_rate(opt, learning_rate(settings, step * self.batch))
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema = self.networks.emas.get(net_name)
        if ema is not None:
            ema.update(self.networks.nets[net_name], (step + 1) * self.batch, self.batch)
        self.window.add(f"{name}/loss", values[0], self.batch)
        for term, total in zip(term_names or [], values[1:], strict=True):
            self.window.add(f"{name}/{term}", total, self.batch)
        return True

    def run_step(self, step: int, data: Batch) -> None:
        """Every update the phase of `step` runs (respecting each `every`)."""
        phase = phase_at(self.phases, step * self.batch / 1000)
        for name in phase.updates:
            every = int(phase.every.get(name, 1))
            if step % every == 0:
                self.run_update(step, name, data)

    def learning_rates(self, step: int) -> dict[str, float]:
        return {n: learning_rate(self.training.networks[n], step * self.batch) for n in self.optimizers}
