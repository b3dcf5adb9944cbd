"""What a suite is: the fixed facts that make two runs on it comparable."""

from __future__ import annotations

from dataclasses import dataclass, field

from sidbench.registry import SUITES


@dataclass(frozen=True)
class DatasetIdentity:
    """Which dataset a suite expects, so a wrong one of the right resolution is refused.

    `sha256` is pinned only for canonical files whose digest is known; `num_images`
    is always checked.
    """

    name: str
    filename: str | None
    num_images: int
    resolution: int
    channels: int
    label_dim: int = 0
    sha256: str | None = None


@dataclass(frozen=True)
class TeacherSpec:
    """Where the teacher comes from, what network it must be, and how it is sampled (EDM Heun, rho 7).

    `preconditioner` and `architecture` are the network's class and `model_type`
    (`sidbench.suites.resolve.check_teacher` refuses another); `preconditioner` is None
    for a teacher that is not a native sidbench network (SD 1.5 in diffusers layout).
    """

    asset: str | None  # name in sidbench.assets.ASSETS (converted into the cache), or None
    packaged: str | None = None  # folder under sidbench/suites/assets/ for shipped teachers
    heun_steps: int = 18
    preconditioner: str | None = "EDMPrecond"
    architecture: str | None = None  # init_kwargs["model_type"], e.g. SongUNet (DDPM++) or DhariwalUNet (ADM)
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0


@dataclass(frozen=True)
class Suite:
    name: str
    version: str
    description: str
    dataset: DatasetIdentity
    teacher: TeacherSpec
    ref_stats: str | None  # asset name (or packaged file) of the reference statistics
    protocols: tuple[str, ...] = ()
    # Further facts of the data and teacher (teacher_dropout, augment_dim, ...); never a method's
    # hyperparameters: those are the recipe's (recipes/*.yaml).
    settings: dict = field(default_factory=dict)

    @property
    def resolution(self) -> int:
        return self.dataset.resolution

    @property
    def channels(self) -> int:
        return self.dataset.channels

    @property
    def label_dim(self) -> int:
        return self.dataset.label_dim


def get_suite(name: str) -> Suite:
    """The registered suite `name` (close-match suggestion when unknown)."""
    return SUITES.get(name)
