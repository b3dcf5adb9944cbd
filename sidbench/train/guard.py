"""The NaN/Inf guard: an update whose loss is not finite is skipped; K skipped in a row stop the run.

A skipped update leaves the network, its optimizer state and its EMA exactly as they were.
The counts of consecutive skips are part of the run state (checkpoints carry them), so a
resumed run stops exactly where the uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sidbench.errors import SidbenchError


class NonFiniteError(SidbenchError):
    """Training stopped: too many updates in a row had a non-finite loss."""


@dataclass
class NanGuard:
    """Counts non-finite updates in a row per update (a finite update of another network does not reset
    the count: a generator whose loss is NaN every step stops the run even while its fake net trains)."""

    limit: int
    consecutive: dict[str, int] = field(default_factory=dict)
    skipped: int = 0

    def record(self, finite: bool, *, update: str, step: int, kimg: float) -> None:
        """Count one update; raise NonFiniteError on the `limit`-th non-finite one in a row."""
        if finite:
            self.consecutive[update] = 0
            return
        count = self.consecutive[update] = self.consecutive.get(update, 0) + 1
        self.skipped += 1
        if count >= self.limit:
            raise NonFiniteError(
                f"training stopped at step {step} ({kimg:g} kimg): update '{update}' had a non-finite loss "
                f"{count} times in a row (each was skipped)",
                hint="lower the learning rate or check the method's loss; resume from an earlier checkpoint "
                     "with --resume CHECKPOINT, or raise training.nan_guard")

    def state(self) -> dict:
        return {"consecutive": dict(self.consecutive), "skipped": self.skipped}

    def load(self, state: dict) -> None:
        self.consecutive = {str(k): int(v) for k, v in dict(state.get("consecutive") or {}).items()}
        self.skipped = int(state.get("skipped", 0))
