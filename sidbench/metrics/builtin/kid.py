"""KID: unbiased polynomial-kernel MMD^2 between generated and reference features, over random subsets."""

from __future__ import annotations

from typing import Any

from sidbench.metrics.metric import Metric, MetricInputs, float_option, int_option


class KernelInceptionDistance(Metric):
    name = "kid"
    version = "1.0.0"
    description = "Kernel Inception Distance: unbiased MMD^2, cubic polynomial kernel, random subsets"
    default_protocol = "kid-100x1000"
    options = frozenset({"num_subsets", "subset_size", "degree", "gamma", "coef0", "seed"})
    keep_features = True
    reference = "features"

    def compute(self, inputs: MetricInputs) -> dict[str, dict[str, Any]]:
        from sidbench.metrics.kid import kid

        o, r = inputs.options, inputs.reference
        subset_size = int_option(o, "subset_size", 1000)
        res = kid(inputs.features.features(), r.features(), num_subsets=int_option(o, "num_subsets", 100),
                  subset_size=subset_size, degree=int_option(o, "degree", 3),
                  gamma=float_option(o, "gamma", None), coef0=float_option(o, "coef0", 1.0),
                  seed=int_option(o, "seed", 2020))
        return {self.name: {"value": res.mean, "std": res.std, "num_subsets": len(res.values),
                            "subset_size": subset_size, "reference_num_images": r.num}}


KID = KernelInceptionDistance()
