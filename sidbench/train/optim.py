"""Per-network optimisation: Adam/AdamW, learning-rate warm-up, gradient sanitising and clipping,
and optimizer state as tensors + JSON (never pickled).

Before every optimizer step a network's gradients go through
`nan_to_num(nan=0, posinf=1e5, neginf=-1e5)` (the authors' loops), then are clipped
element-wise (`grad_clip_value`) and by global norm (`grad_clip_norm`) when set.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from sidbench.errors import CheckpointError
from sidbench.train.config import NetworkTraining


def make_optimizer(params: Iterable[torch.nn.Parameter], settings: NetworkTraining) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
    return cls(list(params), lr=settings.lr, betas=tuple(settings.betas), eps=settings.eps,
               weight_decay=settings.weight_decay)


def learning_rate(settings: NetworkTraining, nimg_before: int) -> float:
    """EDM's linear warm-up: lr * min(images seen before this step / warm-up images, 1); none when 0."""
    if settings.warmup_kimg <= 0:
        return settings.lr
    return settings.lr * min(nimg_before / (settings.warmup_kimg * 1000.0), 1.0)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


@torch.no_grad()
def prepare_gradients(params: list[torch.nn.Parameter], settings: NetworkTraining) -> None:
    """nan_to_num, then value clipping, then norm clipping, in place."""
    grads = [p.grad for p in params if p.grad is not None]
    for g in grads:
        torch.nan_to_num(g, nan=0.0, posinf=1e5, neginf=-1e5, out=g)
    if settings.grad_clip_value is not None:
        for g in grads:
            g.clamp_(-settings.grad_clip_value, settings.grad_clip_value)
    if settings.grad_clip_norm is not None and grads:
        torch.nn.utils.clip_grad_norm_(params, settings.grad_clip_norm)


# --- state: tensors to safetensors, the rest to JSON ---------------------------------------------

def state_tensors(optimizers: Mapping[str, torch.optim.Optimizer]) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, meta): `<net>/<param index>/<key>` tensors and the JSON of everything else."""
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for idx, state in sd["state"].items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{name}/{idx}/{key}"] = value.detach().to("cpu", copy=True).contiguous()
                else:
                    scalars.setdefault(str(idx), {})[key] = value
        meta[name] = {"class": type(opt).__name__, "param_groups": sd["param_groups"], "scalars": scalars}
    json.dumps(meta, allow_nan=False)  # fails loudly here rather than at reading time
    return tensors, meta


def load_state(optimizers: Mapping[str, torch.optim.Optimizer], tensors: Mapping[str, torch.Tensor],
               meta: Mapping[str, Any], where: str) -> None:
    """Restore what `state_tensors` wrote; a missing network or a mismatch is a CheckpointError."""
    for name, opt in optimizers.items():
        entry = meta.get(name)
        if entry is None or entry.get("class") != type(opt).__name__:
            raise CheckpointError(f"{where} has no {type(opt).__name__} state for network '{name}'",
                                  hint="the checkpoint is from another method or config")
        state: dict[int, dict[str, Any]] = {}
        prefix = f"{name}/"
        for key, value in tensors.items():
            if key.startswith(prefix):
                idx, field = key[len(prefix):].split("/", 1)
                state.setdefault(int(idx), {})[field] = value
        for idx, values in entry.get("scalars", {}).items():
            state.setdefault(int(idx), {}).update(values)
        groups = [dict(g) for g in entry["param_groups"]]
        for g in groups:
            if "betas" in g:
                g["betas"] = tuple(g["betas"])
        try:
            opt.load_state_dict({"state": state, "param_groups": groups})
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{where}: optimizer state of '{name}' does not fit ({exc})",
                                  hint="the checkpoint is from another network architecture") from None
