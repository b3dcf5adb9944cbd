"""The metrics sidbench ships, registered through the same `sidbench.metrics` entry points a plugin uses.

Each module holds one metric object: which protocol options it reads, what it needs from the
feature pass and how it turns features into a result entry. The math lives one level up
(`sidbench.metrics.fid`, `.kid`, ...); these modules only adapt it to `evaluate`.
"""

from __future__ import annotations

from sidbench.metrics.builtin.clip_score import CLIP_SCORE
from sidbench.metrics.builtin.fid import FID
from sidbench.metrics.builtin.inception_score import INCEPTION_SCORE
from sidbench.metrics.builtin.kid import KID
from sidbench.metrics.builtin.precision_recall import PRECISION_RECALL
from sidbench.metrics.builtin.prompt_alignment import PROMPT_ALIGNMENT
from sidbench.metrics.metric import Metric

BUILTIN: dict[str, Metric] = {m.name: m for m in (FID, INCEPTION_SCORE, KID, PRECISION_RECALL, CLIP_SCORE,
                                                   PROMPT_ALIGNMENT)}

__all__ = ["BUILTIN", "CLIP_SCORE", "FID", "INCEPTION_SCORE", "KID", "PRECISION_RECALL", "PROMPT_ALIGNMENT"]
