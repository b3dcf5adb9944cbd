"""Tiny EDM networks and update contexts for the method tests (CPU, milliseconds per pass)."""

from __future__ import annotations

import math

import torch

from sidbench.methods.base import Draws, UpdateContext
from sidbench.nets import build_network

C, R = 3, 8  # channels, resolution
IMG = (C, R, R)


def tiny_net(seed: int = 0, label_dim: int = 0, dropout: float = 0.0,
             augment_dim: int = 9) -> torch.nn.Module:
    """A DDPM++ SongUNet under EDM preconditioning with non-trivial random weights, in eval mode."""
    config = {"class_name": "EDMPrecond", "init_kwargs": dict(
        img_resolution=R, img_channels=C, label_dim=label_dim, model_type="SongUNet", model_channels=16,
        channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4], augment_dim=augment_dim, dropout=dropout)}
    net = build_network(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # wake the zero-initialised output layers so outputs depend on every weight
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 / math.sqrt(max(1, p[0].numel()))))
    return net.eval()


def trio(label_dim: int = 0, dropout: float = 0.0) -> dict[str, torch.nn.Module]:
    """teacher, fake_score and generator: three different tiny nets (a run starts them as teacher copies)."""
    return {"teacher": tiny_net(0, label_dim).requires_grad_(False),
            "fake_score": tiny_net(1, label_dim, dropout), "generator": tiny_net(2, label_dim, dropout)}


def draws(b: int, seed: int = 0) -> Draws:
    return Draws([torch.Generator().manual_seed(seed * 1000 + j) for j in range(b)])


def one_hot(b: int, label_dim: int, seed: int = 0) -> torch.Tensor:
    idx = torch.randint(label_dim, (b,), generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.one_hot(idx, label_dim).float()


def context(nets, settings, b: int = 4, seed: int = 0, kimg: float = 0.0, labels=None, images=None,
            label_dim: int = 0) -> UpdateContext:
    return UpdateContext(nets=nets, settings=settings, draws=draws(b, seed), labels=labels, images=images,
                         img_shape=IMG, label_dim=label_dim, kimg=kimg, step=0, micro_batch=b, global_batch=b)


def grads(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def zero_grads(*nets: torch.nn.Module) -> None:
    for net in nets:
        for p in net.parameters():
            p.grad = None


def assert_grads_close(a: dict, b: dict, rtol: float = 1e-4) -> None:
    """Same parameters, and each gradient equal up to rtol of the largest gradient entry overall."""
    assert a.keys() == b.keys()
    scale = max(float(v.abs().max()) for v in b.values())
    assert scale > 0
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=rtol, atol=rtol * scale, msg=name)


def lam(sigma: torch.Tensor, sd: float = 0.5) -> torch.Tensor:
    """lambda(sigma) written out: (sigma^2 + sd^2) / (sigma sd)^2."""
    return (sigma**2 + sd**2) / (sigma * sd) ** 2
