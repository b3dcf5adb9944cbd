"""The text side of a text-to-image run: which prompts a sample gets, and their embeddings.

Prompts are drawn, not read in order: sample j's caption index comes from sample j's own generator
(`ctx.draws`), so the prompts of a step do not depend on how the batch is split over processes and
rounds, a resumed run draws the prompts the uninterrupted one drew, and each update draws its own
prompts (the authors' loop reads a new batch of captions for the fake-net and the generator step).
Teacher training instead captions each real image from its label (`captions_for_labels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from sidbench.errors import ConfigError


class Conditioning:
    """`sample(draws)`, `encode(prompts)`, `empty(b)`, `captions_for_labels(labels, draws)`."""

    def __init__(self, prompts: Sequence[str] | None, encoder: Any | None, label_captions: str | None = None,
                 description: dict | None = None):
        self.prompts = list(prompts) if prompts is not None else None
        self.encoder = encoder
        self.label_captions = label_captions
        self._description = dict(description or {})

    def sample(self, draws: Any) -> list[str]:
        """One caption per sample: index draws.randint(len(prompts)) (one draw per sample)."""
        if not self.prompts:
            raise ConfigError("this run has no prompt list", hint="set training.prompts to a caption file")
        idx = draws.randint(len(self.prompts)).reshape(-1).tolist()
        return [self.prompts[i] for i in idx]

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        if self.encoder is None:
            raise ConfigError("this run has no frozen text encoder (a teacher trained here encodes itself)")
        return self.encoder.encode(prompts)

    def empty(self, batch: int) -> torch.Tensor:
        if self.encoder is None:
            raise ConfigError("this run has no frozen text encoder")
        return self.encoder.empty(batch)

    def captions_for_labels(self, labels: torch.Tensor, draws: Any) -> list[str]:
        """Caption of each one-hot label in a template drawn per sample (one draw per sample)."""
        from sidbench.data.captions import DIGIT_TEMPLATES, digit_caption

        if self.label_captions != "digits":
            raise ConfigError(f"no caption templates for labels ({self.label_captions!r})",
                              hint="captioning labels is defined for the digits-t2i suite")
        digits = labels.argmax(dim=1).tolist()
        templates = draws.randint(len(DIGIT_TEMPLATES)).reshape(-1).tolist()
        return [digit_caption(d, t) for d, t in zip(digits, templates, strict=True)]

    def describe(self) -> dict:
        return dict(self._description)


def open_prompts(suite: Any, path: str | None) -> tuple[list[str] | None, dict]:
    """The training prompts: `training.prompts` (a caption file) or the suite's own list."""
    from sidbench.data.captions import builtin_prompts, read_prompts

    if path is not None:
        prompts = read_prompts(path)
        return prompts, prompts.describe()
    default = suite.settings.get("prompts")
    if isinstance(default, str) and default.startswith("builtin:"):
        prompts = builtin_prompts(default.removeprefix("builtin:"), 30)
        return prompts, prompts.describe()
    return None, {"path": None}
