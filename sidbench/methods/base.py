"""What a distillation method declares; the trainer does everything else.

A method is a file of pure loss functions plus one `Method` object naming its networks,
settings, phases and updates. It knows nothing of devices, DDP, AMP, EMA, checkpoints or
logging: the trainer (`sidbench.train`) does those once for every method.

Randomness: an update never touches a global RNG. It draws from `ctx.draws`, whose row j
comes from a generator seeded from (run seed, step, update, global sample index j). So the
numbers sample j sees do not depend on how the batch is split over processes and
accumulation rounds, and a resumed run draws exactly what the uninterrupted one drew.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sidbench.errors import ConfigError
from sidbench.registry import METHODS, suggest


@dataclass(frozen=True)
class NetworkSpec:
    """A network the method uses.

    `init`: "teacher" (a copy of the teacher's weights), "scratch" (the teacher's architecture,
    freshly initialised from the run seed: teacher training), or the name of another network
    this one copies (e.g. DMD's generator copies the fake net). `trainable=False` nets are
    frozen (the teacher always is). `ema`: the trainer keeps an EMA copy and that copy is
    what checkpoints export for `generate` / `eval --generator`. Optimiser, dropout,
    gradient clipping and EMA half-life are per-network *training* settings of the recipe.

    `build(base, inputs) -> Module`, when given, makes the network from `base` (the network
    `init` gave; None when `init` is "none") and `BuildInputs`: e.g. DMD2's fake net with a GAN
    head, or ADD's discriminator of a frozen feature network and small heads. It runs under a
    seed derived from the run seed and the network's index, so fresh heads are reproducible.
    Parameters it leaves with `requires_grad=False` stay frozen (the optimizer never sees them).
    A built network is never the method's product: the product must stay a plain denoiser.
    """

    name: str
    init: str = "teacher"
    trainable: bool = True
    ema: bool = False
    build: Callable[[torch.nn.Module | None, BuildInputs], torch.nn.Module] | None = None


@dataclass(frozen=True)
class BuildInputs:
    """What `NetworkSpec.build` may use: the frozen teacher (or None), the method's settings, the
    image shape (C, H, W) and label dimension."""

    teacher: torch.nn.Module | None
    settings: Any
    img_shape: tuple[int, int, int]
    label_dim: int


@dataclass(frozen=True)
class Phase:
    """A span of training: which updates run each step, in order, until `until_kimg` (None: the end).

    `every` maps an update name to n: it runs only on steps where step % n == 0 (DMD2's 5:1 rule).
    """

    name: str
    updates: tuple[str, ...]
    until_kimg: float | None = None
    every: Mapping[str, int] = field(default_factory=dict)


@dataclass
class LossOutput:
    """What an update returns for one micro-batch.

    `per_sample` [b]: the trainer backpropagates `per_sample.sum() * scale / global_batch`, so the
    gradient is a mean over the global batch (the authors' `loss.sum() * scale / batch_total`).
    `terms`: named [b] tensors for logging only, averaged over the global batch.
    """

    per_sample: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    scale: float = 1.0


class Draws:
    """Per-sample random numbers: row j of every draw comes from sample j's own generator.

    Made by the trainer for each (step, update, micro-batch); methods call `randn`, `rand`
    and `randint` in a fixed order. The generators live on the CPU, so the numbers are the
    same on every device type.
    """

    def __init__(self, generators: Sequence[torch.Generator], device: torch.device | str = "cpu"):
        self.generators = list(generators)
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """[b, *shape] standard normal."""
        rows = [torch.randn(shape, generator=g, dtype=dtype) for g in self.generators]
        return torch.stack(rows).to(self.device)

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """[b, *shape] uniform on [0, 1)."""
        rows = [torch.rand(shape, generator=g, dtype=dtype) for g in self.generators]
        return torch.stack(rows).to(self.device)

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        """[b, *shape] integers in [0, high)."""
        rows = [torch.randint(high, shape, generator=g) for g in self.generators]
        return torch.stack(rows).to(self.device)


@dataclass
class UpdateContext:
    """Everything one update of one micro-batch may use."""

    nets: Mapping[str, torch.nn.Module]  # "teacher" plus the method's networks (possibly DDP-wrapped)
    settings: Any  # the method's Settings dataclass instance
    draws: Draws
    labels: torch.Tensor | None  # one-hot [b, label_dim] from the dataset loader, or None
    images: torch.Tensor | None  # real images in [-1, 1] when the method needs real data
    img_shape: tuple[int, int, int]  # C, H, W
    label_dim: int
    kimg: float  # images seen before this step, in thousands
    step: int
    micro_batch: int  # b
    global_batch: int  # B (all processes, all accumulation rounds)
    # Text-to-image runs: prompts and their embeddings (`sidbench.train.conditioning.Conditioning`:
    # sample(draws), encode(prompts), empty(b), captions_for_labels(labels, draws)); None otherwise.
    conditioning: Any = None


@dataclass(frozen=True)
class Update:
    """One optimizer step of one network: `fn(ctx) -> LossOutput`."""

    name: str
    network: str
    fn: Callable[[UpdateContext], LossOutput]


@dataclass(frozen=True)
class Method:
    name: str
    version: str
    paper: str
    description: str
    networks: tuple[NetworkSpec, ...]
    settings: type  # a dataclass: fields with types and defaults; `validate()` if it has one
    updates: tuple[Update, ...]
    phases: Callable[[Any], tuple[Phase, ...]]
    needs_real_data: bool = False
    # The network whose EMA (or weights, if it has no EMA) checkpoints export for `generate` /
    # `eval --generator`; with role "generator" it is saved with the settings' `sigma_init`.
    product: str = "generator"
    product_role: str = "generator"
    # The digits recipe `sidbench quickstart` distils the shipped teacher with: a recipe mapping, or the
    # path of a recipe file the plugin ships. None: `recipes/<name>-digits.yaml` of the source checkout
    # sidbench runs from; with neither, the quickstart lists the method as skipped.
    quickstart_recipe: str | Mapping[str, Any] | None = field(default=None, compare=False)

    def make_settings(self, values: Mapping[str, Any] | None = None) -> Any:
        """Typed settings from a mapping; unknown keys name the nearest valid one."""
        names = [f.name for f in dataclasses.fields(self.settings)]
        values = dict(values or {})
        for key in values:
            if key not in names:
                raise ConfigError(f"method {self.name} has no setting '{key}'.{suggest(key, names)}",
                                  hint=f"its settings: {', '.join(names)}")
        obj = self.settings(**values)
        check = getattr(obj, "validate", None)
        if check is not None:
            check()
        return obj

    def update(self, name: str) -> Update:
        for u in self.updates:
            if u.name == name:
                return u
        raise ConfigError(f"method {self.name} has no update '{name}'")


def register_method(method: Method) -> Method:
    METHODS.register(method.name, method)
    return method
