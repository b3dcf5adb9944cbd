"""Improved precision and recall: k-NN manifolds of reference vs generated features (two result entries)."""

from __future__ import annotations

from typing import Any

from sidbench.metrics.metric import Metric, MetricInputs, choice_option, int_option


class PrecisionRecallMetric(Metric):
    name = "pr"
    version = "1.0.0"
    description = "Improved precision and recall (Kynkaanniemi et al. 2019), k-NN manifolds"
    aliases = ("precision", "recall", "prc")
    default_protocol = "pr-vgg16"
    result_keys = ("precision", "recall")
    options = frozenset({"k", "dtype"})
    keep_features = True
    reference = "features"

    def compute(self, inputs: MetricInputs) -> dict[str, dict[str, Any]]:
        from sidbench.metrics.precision_recall import precision_recall

        r = inputs.reference
        pr = precision_recall(r.features(), inputs.features.features(), k=int_option(inputs.options, "k", 3),
                              dtype=choice_option(inputs.options, "dtype", "float32", ("float32", "float64")))
        extra = {"k": pr.k, "reference_num_images": r.num}
        return {"precision": {**extra, "value": pr.precision}, "recall": {**extra, "value": pr.recall}}


PRECISION_RECALL = PrecisionRecallMetric()
