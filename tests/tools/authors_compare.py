"""What the compare_*_authors.py tools share: fresh imports of an authors' checkout, random weights,
and relative differences of values and gradients. Not collected by pytest."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import torch


def import_fresh(path: str, modules: Sequence[str],
                 roots: Sequence[str] = ("training", "torch_utils", "dnnlib"),
                 optional: Sequence[str] = ()) -> dict:
    """Import `modules` (and, where present, `optional`) from the checkout at `path`, dropping any copy of
    the top-level packages `roots` imported before (another branch or repository)."""
    import contextlib
    import importlib

    for name in list(sys.modules):
        if name.split(".")[0] in roots:
            del sys.modules[name]
    sys.path.insert(0, path)
    try:
        found = {name: importlib.import_module(name) for name in modules}
        for name in optional:
            with contextlib.suppress(ImportError):
                found[name] = importlib.import_module(name)
    finally:
        sys.path.remove(path)
    return found


def randomise(net: torch.nn.Module, seed: int, scale: float = 0.5) -> torch.nn.Module:
    """Every parameter redrawn from N(0, (scale / sqrt(fan-in))^2): no output or gradient is trivially 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (scale / math.sqrt(max(1, p[0].numel()))))
    return net


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (the absolute difference when b is all zeros)."""
    scale = float(b.abs().max())
    return float((a - b).abs().max()) / scale if scale > 0 else float((a - b).abs().max())


def grad_rel(ours: torch.nn.Module, theirs: torch.nn.Module) -> float:
    """Largest `rel` of the gradients of same-named parameters (a missing gradient counts as zeros)."""
    theirs_g = dict(theirs.named_parameters())
    worst = 0.0
    for name, p in ours.named_parameters():
        q = theirs_g[name]
        if q.grad is None and p.grad is None:
            continue
        a = p.grad if p.grad is not None else torch.zeros_like(p)
        b = q.grad if q.grad is not None else torch.zeros_like(q)
        worst = max(worst, rel(a.flatten(), b.flatten()))
    return worst


def clear(*nets: torch.nn.Module) -> None:
    for net in nets:
        for p in net.parameters():
            p.grad = None
