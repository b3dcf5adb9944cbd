"""Per-image seeds: image i is a function of seed i alone (EDM's convention).

Each image owns a `torch.Generator` seeded with `seed % 2**32`. From it we draw, in
this order: the latent `randn(C, H, W)`, then for a conditional net its class index
`randint(label_dim)` (a 0-d draw, as EDM's `randint(..., size=[B])` per stacked
generator), then any sampler noise. Keeping this order is what makes our images for
a seed list equal EDM's `generate.py` output for the same network and device type,
and makes every image independent of the batch it was computed in.
"""

from __future__ import annotations

import numbers
import operator
import re
from collections.abc import Sequence, Sized

import torch

from sidbench.errors import ConfigError

MAX_SEED = 2**32 - 1  # EDM seeds a generator with seed % 2**32: larger seeds would repeat images
MAX_SEEDS = 1_000_000  # seeds per call; a bigger list costs memory before any image is made
_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")
_INT = re.compile(r"^\d+$")
_NEGATIVE = re.compile(r"^-\s*\d+$|^\d+\s*-\s*-\s*\d+$")
_RANGE_HINT = f"seeds are 0..{MAX_SEED}, EDM's 32-bit range"
_SPLIT_HINT = f"split them into runs of at most {MAX_SEEDS:,} seeds; the runs may share one --out"


def _seed(text: str, spec: str) -> int:
    """One seed from its digits, refused beyond EDM's range without building a huge int."""
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(MAX_SEED)) or int(digits) > MAX_SEED:
        shown = text if len(text) <= 20 else text[:20] + "..."
        raise ConfigError(f"seed {shown} in '{spec[:60]}' is out of range", hint=_RANGE_HINT)
    return int(digits)


def _checked(seeds: list[int], spec_text: str) -> list[int]:
    if not seeds:
        raise ConfigError("the seed list is empty", hint="give e.g. --seeds 0-49999 or --num 50000")
    if len(seeds) > MAX_SEEDS:
        raise ConfigError(f"{len(seeds):,} seeds is more than {MAX_SEEDS:,} in one call", hint=_SPLIT_HINT)
    seen: set[int] = set()
    for s in seeds:
        if s < 0:
            raise ConfigError(f"negative seed {s} in '{spec_text[:60]}'",
                              hint="seeds are non-negative integers")
        if s > MAX_SEED:
            raise ConfigError(f"seed {s} is out of range", hint=_RANGE_HINT)
        if s in seen:
            raise ConfigError(f"seed {s} appears more than once in '{spec_text[:60]}'",
                              hint="list each seed once")
        seen.add(s)
    return seeds


def parse_seeds(spec: str | Sequence[int]) -> list[int]:
    """Parse '0-49999,60000,70-79' into a list of seeds (ranges inclusive, order kept).

    Stricter than EDM's `parse_int_list`: empty parts, negative numbers, reversed
    ranges, repeated seeds and seeds beyond 2**32-1 are refused, since each would
    silently change how many distinct images a metric sees. A list longer than
    `MAX_SEEDS` is refused before it is built.
    """
    if not isinstance(spec, str):
        if isinstance(spec, Sized) and len(spec) > MAX_SEEDS:
            raise ConfigError(f"{len(spec):,} seeds is more than {MAX_SEEDS:,} in one call", hint=_SPLIT_HINT)
        seeds = []
        for s in spec:
            if isinstance(s, bool) or not hasattr(type(s), "__index__"):
                raise ConfigError(f"seed {s!r} is not a whole number",
                                  hint="give a list of ints or '0-49999'")
            seeds.append(operator.index(s))
            if len(seeds) > MAX_SEEDS:
                raise ConfigError(f"more than {MAX_SEEDS:,} seeds in one call", hint=_SPLIT_HINT)
        return _checked(seeds, ",".join(str(s) for s in seeds[:20]))
    bounds: list[tuple[int, int]] = []
    total = 0
    for raw in spec.split(","):
        part = raw.strip()
        if m := _RANGE.match(part):
            lo, hi = _seed(m.group(1), spec), _seed(m.group(2), spec)
            if hi < lo:
                raise ConfigError(f"seed range '{part}' is empty (end < start)", hint="write it as LOW-HIGH")
        elif _INT.match(part):
            lo = hi = _seed(part, spec)
        elif _NEGATIVE.match(part):
            raise ConfigError(f"negative seed in '{spec[:60]}'", hint="seeds are non-negative integers")
        else:
            raise ConfigError(
                f"cannot parse seeds '{spec[:60]}': bad part '{raw[:30]}'",
                hint="use non-negative integers and inclusive ranges, e.g. 0-49999,60000,70-79",
            )
        total += hi - lo + 1
        if total > MAX_SEEDS:
            raise ConfigError(f"'{spec[:60]}' lists more than {MAX_SEEDS:,} seeds", hint=_SPLIT_HINT)
        bounds.append((lo, hi))
    seeds = [s for lo, hi in bounds for s in range(lo, hi + 1)]
    return _checked(seeds, spec)


def resolve_seeds(seeds: str | Sequence[int] | None, num: int | None) -> list[int]:
    """The seed list from `seeds` and/or a count: `num` alone means 0..num-1; given both, they must agree."""
    if num is not None:
        if isinstance(num, bool) or not isinstance(num, numbers.Integral) or num < 1:
            raise ConfigError(f"the number of images {num!r} must be a whole number >= 1",
                              hint="e.g. --num 50000")
        if num > MAX_SEEDS:
            raise ConfigError(f"{num:,} images is more than {MAX_SEEDS:,} in one call", hint=_SPLIT_HINT)
    if seeds is None:
        if num is None:
            raise ConfigError("no seeds given", hint="give --seeds 0-49999 or --num 50000")
        return list(range(num))
    parsed = parse_seeds(seeds)
    if num is not None and num != len(parsed):
        shown = seeds if isinstance(seeds, str) else format_seeds(parsed)
        raise ConfigError(f"--seeds {shown[:60]} lists {len(parsed)} seeds but --num is {num}",
                          hint="drop one of them or make them agree")
    return parsed


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
    if isinstance(class_idx, bool) or not isinstance(class_idx, numbers.Integral):
        raise ConfigError(f"class {class_idx!r} is not a whole number",
                          hint="give a class index, e.g. --class 3")
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
