"""Per-image seeds: image i is a function of seed i alone (EDM's convention).

Each image owns a `torch.Generator` seeded with `seed % 2**32`. From it we draw, in
this order: the latent `randn(C, H, W)`, then for a conditional net its class index
`randint(label_dim)` (a 0-d draw, as EDM's `randint(..., size=[B])` per stacked
generator), then any sampler noise. Keeping this order is what makes our images for
a seed list equal EDM's `generate.py` output for the same network and device type,
and makes every image independent of the batch it was computed in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from sidbench.errors import ConfigError

_RANGE = re.compile(r"^(\d+)-(\d+)$")
_INT = re.compile(r"^\d+$")


def parse_seeds(spec: str | Sequence[int]) -> list[int]:
    """Parse '0-49999,60000,70-79' into a list of seeds (ranges inclusive, order kept).

    Stricter than EDM's `parse_int_list`: empty parts, negative numbers, reversed
    ranges and repeated seeds are refused, since each would silently change how many
    distinct images a metric sees.
    """
    if not isinstance(spec, str):
        seeds = [int(s) for s in spec]
        spec_text = ",".join(str(s) for s in seeds)
    else:
        spec_text = spec
        seeds = []
        for raw in spec.split(","):
            part = raw.strip()
            m = _RANGE.match(part)
            if m:
                lo, hi = int(m.group(1)), int(m.group(2))
                if hi < lo:
                    raise ConfigError(f"seed range '{part}' is empty (end < start)",
                                      hint="write it as LOW-HIGH")
                seeds.extend(range(lo, hi + 1))
            elif _INT.match(part):
                seeds.append(int(part))
            else:
                raise ConfigError(
                    f"cannot parse seeds '{spec}': bad part '{raw}'",
                    hint="use non-negative integers and inclusive ranges, e.g. 0-49999,60000,70-79",
                )
    if not seeds:
        raise ConfigError("the seed list is empty", hint="give e.g. --seeds 0-49999 or --num 50000")
    if any(s < 0 for s in seeds):
        raise ConfigError(f"negative seed in '{spec_text}'", hint="seeds are non-negative integers")
    if len(set(seeds)) != len(seeds):
        dup = next(s for i, s in enumerate(seeds) if s in seeds[:i])
        raise ConfigError(f"seed {dup} appears more than once in '{spec_text}'", hint="list each seed once")
    return seeds


def format_seeds(seeds: Sequence[int]) -> str:
    """Compact spec for a seed list ('0-9,12'); `parse_seeds(format_seeds(s)) == s`."""
    parts: list[str] = []
    i = 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(str(seeds[i]) if j == i else f"{seeds[i]}-{seeds[j]}")
        i = j + 1
    return ",".join(parts)


class StackedRandomGenerator:
    """One generator per image; every draw stacks one per-image draw along dim 0."""

    def __init__(self, device: str | torch.device, seeds: Sequence[int]):
        self.device = torch.device(device)
        self.generators = [torch.Generator(self.device).manual_seed(int(s) % (1 << 32)) for s in seeds]

    def __len__(self) -> int:
        return len(self.generators)

    def _check(self, size: Sequence[int]) -> list[int]:
        size = list(size)
        if not size or size[0] != len(self.generators):
            n = len(self.generators)
            raise ValueError(f"first dimension of {size} must be the number of seeds ({n})")
        return size

    def randn(self, size: Sequence[int], **kwargs) -> torch.Tensor:
        size = self._check(size)
        kwargs.setdefault("device", self.device)
        return torch.stack([torch.randn(size[1:], generator=g, **kwargs) for g in self.generators])

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.randn(x.shape, dtype=x.dtype, layout=x.layout, device=x.device)

    def randint(self, *args, size: Sequence[int], **kwargs) -> torch.Tensor:
        size = self._check(size)
        kwargs.setdefault("device", self.device)
        draws = [torch.randint(*args, size=size[1:], generator=g, **kwargs) for g in self.generators]
        return torch.stack(draws)


def check_class_idx(class_idx: int | None, label_dim: int) -> None:
    """Refuse a fixed class for an unconditional net, or one outside 0..label_dim-1."""
    if class_idx is None:
        return
    if not label_dim:
        raise ConfigError(
            f"class {class_idx} asked for an unconditional network",
            hint="drop --class, or use a class-conditional network",
        )
    if not 0 <= class_idx < label_dim:
        raise ConfigError(f"class {class_idx} is out of range", hint=f"use 0..{label_dim - 1}")


def latents_and_labels(
    seeds: Sequence[int],
    shape: Sequence[int],
    label_dim: int,
    device: str | torch.device = "cpu",
    class_idx: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, StackedRandomGenerator]:
    """Draw float32 latents [B, *shape] and one-hot labels [B, label_dim] (None if unconditional).

    The class index is drawn even when `class_idx` fixes the label, so the sampler
    noise that follows is the same as EDM's. The returned generator is positioned for
    that noise.
    """
    check_class_idx(class_idx, label_dim)
    device = torch.device(device)
    rng = StackedRandomGenerator(device, seeds)
    latents = rng.randn([len(seeds), *shape], device=device)
    labels = None
    if label_dim:
        idx = rng.randint(label_dim, size=[len(seeds)], device=device)
        if class_idx is not None:
            idx = torch.full_like(idx, class_idx)
        labels = torch.eye(label_dim, device=device)[idx]
    return latents, labels, rng
