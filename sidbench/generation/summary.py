"""What one `generate` call did, in numbers and as the line the CLI prints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GenerateSummary:
    """What a `generate` call did; `images_per_second` counts only images made now."""

    out: Path
    written: int
    skipped: int
    seconds: float
    nfe: int  # network evaluations per image

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.written} images written, {self.skipped} already done -> {self.out} "
            f"({self.seconds:.1f} s, {self.images_per_second:.3g} img/s, {self.nfe} NFE/image)"
        )
