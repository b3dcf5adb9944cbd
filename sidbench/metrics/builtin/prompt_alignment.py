"""digits-t2i prompt alignment: the digits classifier's probability of the digit each caption asks for.

This is not CLIP score: no text encoder is involved. Caption i names one digit
(`sidbench.data.captions.prompted_digit`); image i was made from caption i. The value is
mean_i softmax(logits_i)[digit_i] in float64, and `accuracy` is the fraction of images whose
argmax is the prompted digit (a tie for the maximum counts as a miss). A classifier that cannot
tell the digits apart (uniform logits) scores 0.1; images that ignore their prompts score about
the mean probability of a random digit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sidbench.errors import ConfigError, DatasetError
from sidbench.metrics.metric import Metric, MetricInputs

NUM_DIGITS = 10


@dataclass(frozen=True)
class PromptAlignment:
    value: float  # mean probability of the prompted digit
    accuracy: float  # fraction with argmax == prompted digit
    num_images: int


def prompted_digits(captions: Sequence[str], count: int) -> np.ndarray:
    """The digit each of the first `count` captions asks for; one-line errors name the bad caption."""
    from sidbench.data.captions import prompted_digit

    if len(captions) < count:
        raise ConfigError(f"{count} images but only {len(captions)} captions",
                          hint="image i must come from caption i")
    out = np.empty(count, dtype=np.int64)
    for i in range(count):
        try:
            out[i] = prompted_digit(captions[i])
        except DatasetError as exc:
            raise DatasetError(f"caption {i} ({captions[i]!r}) names no digit",
                               hint=exc.hint) from None
    return out


def prompt_alignment(logits: Any, digits: Any) -> PromptAlignment:
    """Mean softmax probability of `digits[i]` under `logits[i]` ([N, 10]), and the argmax accuracy."""
    x = np.asarray(logits, dtype=np.float64)
    d = np.asarray(digits, dtype=np.int64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != NUM_DIGITS:
        raise ConfigError(f"prompt alignment needs [N, {NUM_DIGITS}] digit logits, got shape {x.shape}",
                          hint="use the digits-classifier extractor's 'logits'")
    if d.shape != (x.shape[0],) or d.min() < 0 or d.max() >= NUM_DIGITS:
        raise ConfigError(f"need one digit 0-9 per image ({x.shape[0]}), got {d.shape[0]} digits")
    x = x - x.max(axis=1, keepdims=True)  # softmax in float64, max-shifted
    p = np.exp(x)
    p /= p.sum(axis=1, keepdims=True)
    picked = p[np.arange(len(d)), d]
    # argmax ties (e.g. uniform logits) count as a miss unless the prompted digit is the only maximum
    hit = (x[np.arange(len(d)), d] == 0.0) & ((x == 0.0).sum(axis=1) == 1)
    return PromptAlignment(value=float(picked.mean()), accuracy=float(hit.mean()), num_images=len(d))


class PromptAlignmentMetric(Metric):
    name = "prompt_alignment"
    version = "1.0.0"
    description = ("prompt alignment: the digits classifier's mean softmax probability of the digit each "
                   "caption asks for (not CLIP score), plus argmax accuracy")
    default_protocol = "digits-t2i-alignment"
    options = frozenset()
    keep_features = True
    reference = "none"

    def compute(self, inputs: MetricInputs) -> dict[str, dict[str, Any]]:
        captions = inputs.captions
        if captions is None:
            raise ConfigError("prompt alignment needs the captions of the images",
                              hint="pass captions (caption i made image i), e.g. --captions captions.txt")
        logits = inputs.features.features()
        res = prompt_alignment(logits, prompted_digits(captions, len(logits)))
        return {self.name: {"value": res.value, "accuracy": res.accuracy}}


PROMPT_ALIGNMENT = PromptAlignmentMetric()
