"""Thin torch.distributed helpers (gloo on CPU, NCCL on GPU) shared by metrics, generation and training.

Every helper is a no-op (identity) without an initialised process group, so the same metric
code runs in one process and under torchrun.
"""

from __future__ import annotations

import torch


def is_initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    return torch.distributed.get_world_size() if is_initialized() else 1


def rank() -> int:
    return torch.distributed.get_rank() if is_initialized() else 0


def _comm_device(t: torch.Tensor | None = None) -> torch.device:
    """NCCL needs CUDA tensors; gloo wants CPU ones."""
    if is_initialized() and torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_tensor_(t: torch.Tensor) -> torch.Tensor:
    """In-place SUM all-reduce (exact for integer tensors)."""
    if not is_initialized():
        return t
    dev = _comm_device(t)
    buf = t if t.device == dev else t.to(dev)
    torch.distributed.all_reduce(buf, op=torch.distributed.ReduceOp.SUM)
    if buf is not t:
        t.copy_(buf.to(t.device))
    return t


def sum_int(value: int) -> int:
    t = torch.tensor([value], dtype=torch.int64)
    return int(sum_tensor_(t).item())


def max_int(value: int) -> int:
    if not is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.int64, device=_comm_device())
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return int(t.item())


def gather_rows(indices: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All-gather variable-length (indices [n], rows [n, D]) from every rank onto every rank."""
    if not is_initialized():
        return indices, rows
    dev = _comm_device()
    ws = world_size()
    counts = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(ws)]
    torch.distributed.all_gather(counts, torch.tensor([indices.numel()], dtype=torch.int64, device=dev))
    sizes = [int(c.item()) for c in counts]
    cap = max(sizes)
    dim = rows.shape[1]
    wide = max_int(int(rows.dtype == torch.float64))  # every rank must send the same dtype
    dtype = torch.float64 if wide else torch.float32
    pad_idx = torch.zeros(cap, dtype=torch.int64, device=dev)
    pad_rows = torch.zeros(cap, dim, dtype=dtype, device=dev)
    pad_idx[: indices.numel()] = indices.to(dev)
    pad_rows[: rows.shape[0]] = rows.to(device=dev, dtype=dtype)
    all_idx = [torch.empty_like(pad_idx) for _ in range(ws)]
    all_rows = [torch.empty_like(pad_rows) for _ in range(ws)]
    torch.distributed.all_gather(all_idx, pad_idx)
    torch.distributed.all_gather(all_rows, pad_rows)
    idx = torch.cat([a[:s] for a, s in zip(all_idx, sizes, strict=True)]).cpu()
    out = torch.cat([a[:s] for a, s in zip(all_rows, sizes, strict=True)]).cpu()
    return idx, out
