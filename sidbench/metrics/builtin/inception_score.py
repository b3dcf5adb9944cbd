"""Inception Score of the generated images' logits (no reference), under the split conventions of IS."""

from __future__ import annotations

from typing import Any

from sidbench.metrics.metric import Metric, MetricInputs, choice_option, int_option


class InceptionScoreMetric(Metric):
    name = "is"
    version = "1.0.0"
    description = "Inception Score: exp E KL(p(y|x) || p(y)) over splits of the logits (SiD / ADM / fidelity)"
    aliases = ("isc", "inception_score")
    default_protocol = "is-10split"
    options = frozenset({"mode", "splits", "split_size", "shuffle_seed"})
    keep_features = True
    reference = "none"

    def compute(self, inputs: MetricInputs) -> dict[str, dict[str, Any]]:
        from sidbench.metrics.inception_score import MODES, inception_score

        o = inputs.options
        score = inception_score(inputs.features.features(), splits=int_option(o, "splits", 10),
                                mode=choice_option(o, "mode", "sid", MODES),
                                split_size=int_option(o, "split_size", 5000),
                                shuffle_seed=int_option(o, "shuffle_seed", 2020))
        return {self.name: {"value": score.mean, "std": score.std, "splits": len(score.scores),
                            "mode": score.mode}}


INCEPTION_SCORE = InceptionScoreMetric()
