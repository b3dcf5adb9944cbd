"""Processes of a run: torchrun's environment, the process group, and summing gradients over processes.

`torchrun --nproc_per_node N` (and its rendezvous for many nodes) starts the processes;
sidbench starts none. A process group is opened when WORLD_SIZE > 1: NCCL when the
run is on CUDA (one GPU per process, `cuda:LOCAL_RANK`), gloo on CPU. Gradients are
summed over processes in buckets after the local accumulation rounds, which is what
DDP does without its overlap, so one process x 4 rounds, 2 x 2 and 1 x 1 with the full
batch compute the same sum up to floating-point reduction order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch

import sidbench.distributed as distributed
from sidbench.devices import default_device, parse_device
from sidbench.errors import ConfigError

_BUCKET_ELEMENTS = 1 << 24  # 64 MB of float32 per all-reduce


def torchrun_world() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment; (0, 0, 1) without it."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("WORLD_SIZE / RANK / LOCAL_RANK are not whole numbers",
                          hint="start many processes with torchrun") from None
    return rank, local, world


def run_device(device: str | torch.device | None) -> torch.device:
    """The device of this process: as given, else cuda:LOCAL_RANK under torchrun on GPUs, else the default."""
    _, local, world = torchrun_world()
    if device is None:
        device = default_device()
        if device.type == "cuda" and world > 1:
            device = torch.device("cuda", local)
    device = parse_device(device)
    if device.type == "cuda" and device.index is None and world > 1:
        device = torch.device("cuda", local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def init_processes(device: torch.device) -> bool:
    """Open the process group torchrun asked for; True if this call opened it (and must close it)."""
    _, _, world = torchrun_world()
    if world <= 1 or distributed.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend=backend, init_method="env://")
    return True


def close_processes(opened: bool) -> None:
    if opened and distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier() -> None:
    if distributed.is_initialized():
        torch.distributed.barrier()


def sum_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """SUM-all-reduce the gradients of `params` over processes, in buckets of one dtype (in place).

    A parameter without a gradient gets zeros first, so every process reduces the same buckets
    (DDP does the same for parameters a step did not use).
    """
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not distributed.is_initialized() or distributed.world_size() == 1:
        return
    bucket: list[torch.Tensor] = []
    size = 0
    for p in params:
        if bucket and (bucket[0].dtype != p.grad.dtype or size + p.grad.numel() > _BUCKET_ELEMENTS):
            _reduce(bucket)
            bucket, size = [], 0
        bucket.append(p.grad)
        size += p.grad.numel()
    if bucket:
        _reduce(bucket)


def _reduce(grads: list[torch.Tensor]) -> None:
    flat = torch.cat([g.reshape(-1) for g in grads])
    distributed.sum_tensor_(flat)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def sum_values(values: torch.Tensor) -> torch.Tensor:
    """SUM-all-reduce a small float64 vector (loss sums for logging and the NaN guard)."""
    return distributed.sum_tensor_(values)
