"""CLIP score: mean cosine between the image embeddings and their captions' text embeddings.

Image i must come from caption i. The protocol's `text_prefix` is put before every caption here
(not by the extractor), so a run's record always says which prefix made its number.
"""

from __future__ import annotations

from typing import Any

from sidbench.errors import ConfigError
from sidbench.metrics.metric import Metric, MetricInputs, bool_option, float_option

TEXT_BATCH = 256


class ClipScoreMetric(Metric):
    name = "clip_score"
    version = "1.0.0"
    description = "CLIP score: mean cosine similarity of paired image and caption embeddings"
    aliases = ("clip",)
    default_protocol = "clip-score-vitg14"
    options = frozenset({"scale", "clamp", "text_prefix"})
    keep_features = True
    reference = "none"

    def compute(self, inputs: MetricInputs) -> dict[str, dict[str, Any]]:
        import torch

        from sidbench.metrics.clip_score import clip_score

        ext, captions = inputs.extractor, inputs.captions
        if captions is None:
            raise ConfigError("CLIP score needs the captions of the images",
                              hint="pass --captions captions.txt")
        if not hasattr(ext, "encode_text"):
            raise ConfigError(f"extractor {ext.name} has no text encoder")
        prefix = inputs.options.get("text_prefix", "")
        if not isinstance(prefix, str):
            raise ConfigError(f"option 'text_prefix' must be a string, got {prefix!r}")
        img = inputs.features.features()
        if len(captions) < len(img):
            raise ConfigError(f"{len(img)} images but only {len(captions)} captions",
                              hint="image i must come from caption i")
        txt = torch.cat([ext.encode_text([prefix + c for c in captions[i:i + TEXT_BATCH]])
                         for i in range(0, len(img), TEXT_BATCH)])
        cs = clip_score(img, txt.numpy(), scale=float_option(inputs.options, "scale", 1.0),
                        clamp=bool_option(inputs.options, "clamp", False))
        return {self.name: {"value": cs.value, "scale": cs.scale, "clamp": cs.clamp, "text_prefix": prefix}}


CLIP_SCORE = ClipScoreMetric()
