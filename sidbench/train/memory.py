"""Will a training batch fit in memory? Refuse one that cannot, before the kernel kills the process.

The estimate is a lower bound: the bytes autograd saves for the backward pass (measured
by running the loss on two tiny batches and taking the per-image difference) times the
batch, plus weights, gradients, Adam's two moments and the EMA copy. The backward pass
needs more than this, so a batch refused here can never fit; one accepted may still be
too large on a crowded machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from sidbench.errors import ConfigError

_PROBE_BATCHES = (2, 4)


class BatchTooLarge(ConfigError):
    """A micro-batch that cannot fit: what it needs, per image, what is free, and how many would fit."""

    def __init__(self, batch: int, need: int, per_image: int, available: int, fit: int, device: str,
                 option: str = "training.batch_per_gpu"):
        self.batch, self.need, self.per_image = batch, need, per_image
        self.available, self.fit = available, fit
        super().__init__(
            f"batch {batch:,} needs at least {gigabytes(need)} on {device} ({gigabytes(per_image)} of "
            f"activations per image), more than the {gigabytes(available)} available",
            hint=f"use a smaller {option} (at most about {fit:,} fit now)")


@dataclass(frozen=True)
class MemoryEstimate:
    per_image_bytes: int  # saved activations per image
    fixed_bytes: int  # weights, gradients, Adam moments, EMA copy

    def total(self, batch: int) -> int:
        return self.fixed_bytes + batch * self.per_image_bytes

    def max_batch(self, available: int) -> int:
        return max(0, (available - self.fixed_bytes) // max(self.per_image_bytes, 1))


def _saved_bytes(run: Callable[[int], torch.Tensor], batch: int) -> int:
    """Bytes of the distinct storages autograd saves while `run(batch)` builds its graph."""
    storages: dict[tuple[str, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[(str(t.device), storage.data_ptr())] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run(batch)
    return sum(storages.values())


def per_image_bytes(run: Callable[[int], torch.Tensor], device: torch.device) -> int:
    """Bytes autograd saves per image in `run(batch)`, measured on two tiny batches; every RNG restored.

    `run` must draw its own randomness from explicit generators; the global RNG (dropout)
    is forked and restored, so training afterwards is bit-identical to training without
    the probe.
    """
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        small, large = (_saved_bytes(run, b) for b in _PROBE_BATCHES)
    return int(max(0, (large - small) // (_PROBE_BATCHES[1] - _PROBE_BATCHES[0])))


def parameter_bytes(modules: Iterable[torch.nn.Module]) -> int:
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())


def estimate_training_memory(net: torch.nn.Module, run: Callable[[int], torch.Tensor],
                             device: torch.device) -> MemoryEstimate:
    """One network trained with Adam and an EMA: `per_image_bytes(run)` and 5 copies of its weights."""
    return MemoryEstimate(per_image_bytes=per_image_bytes(run, device),
                          fixed_bytes=5 * parameter_bytes([net]))


def _cgroup_available() -> int | None:
    """Memory left under a cgroup v2 limit (containers), or None when there is none."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((root / "memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def _meminfo_available() -> int | None:
    """Linux's MemAvailable (what can be allocated without swapping), else the free pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not on this system (macOS has no SC_AVPHYS_PAGES)
        return None


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a new allocation on `device` (None when this system does not say)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    found = [n for n in (_meminfo_available(),) if n is not None]
    cgroup = _cgroup_available()
    if cgroup is not None:
        found.append(cgroup)
    return min(found) if found else None


def gigabytes(n: int) -> str:
    """A byte count for people: '24.3 GB', '312 MB', '2.7 MB', '9.4 kB'."""
    for unit, size in (("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{n / 1e3:.1f} kB"
