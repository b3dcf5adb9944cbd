"""A metric as an outside package would write it: registered through the `sidbench.metrics` entry point."""

from __future__ import annotations

import numpy as np

from sidbench.metrics.metric import Metric, MetricInputs, float_option
from sidbench.metrics.protocols import Protocol


class MeanNorm(Metric):
    name = "mean_norm"
    version = "0.1.0"
    description = "Mean L2 norm of the features (a plugin example)"
    default_protocol = "mean-norm-tiny"
    options = frozenset({"power"})
    keep_features = True
    reference = "none"

    def compute(self, inputs: MetricInputs) -> dict:
        power = float_option(inputs.options, "power", 1.0)
        norms = np.linalg.norm(inputs.features.features(), axis=1) ** power
        return {self.name: {"value": float(norms.mean()), "power": power}}


MEAN_NORM = MeanNorm()
MeanNorm.protocols = (Protocol("mean-norm-tiny", "0.1.0", MEAN_NORM, "inception-v3-compat", "pool", 12,
                               False, "mean feature norm of 12 images", "a plugin"),)
