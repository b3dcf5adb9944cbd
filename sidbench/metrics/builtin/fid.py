"""FID (and the Frechet distance of any feature space): Gaussian fits of generated vs reference features.

The reference is either precomputed statistics (.npz: EDM's, ADM's, ours) or reference images,
whose exact sums give mean and covariance. Options: `cov` (generated covariance, "unbiased" N-1
as EDM, "biased" N as SiD's in-training metric) and `reference_cov` (the convention the reference
covariance must have: computed so from images; an .npz saying otherwise is refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidbench.errors import AssetError, ConfigError
from sidbench.metrics.metric import Metric, MetricInputs, choice_option

CONVENTIONS = ("unbiased", "biased")


class FrechetInceptionDistance(Metric):
    name = "fid"
    version = "1.0.0"
    description = "Frechet distance between Gaussian fits of generated and reference features (FID, FD)"
    aliases = ("fd",)
    default_protocol = "edm-fid50k"
    options = frozenset({"cov", "reference_cov"})
    keep_features = False
    reference = "stats"

    def check_reference(self, reference: Any, options: Mapping[str, Any]) -> None:
        want = choice_option(options, "reference_cov", "unbiased", CONVENTIONS)
        have = reference.meta.get("cov")  # EDM's and ADM's files do not say: both are unbiased
        if have is not None and have != want:
            raise AssetError(f"{reference.path} holds a {have} covariance, the protocol expects {want}",
                             hint="recompute the reference with `sidbench refstats` or choose the matching "
                                  "protocol")

    def compute(self, inputs: MetricInputs) -> dict[str, dict[str, Any]]:
        from sidbench.metrics.fid import frechet_distance

        cov = choice_option(inputs.options, "cov", "unbiased", CONVENTIONS)
        ref_cov = choice_option(inputs.options, "reference_cov", "unbiased", CONVENTIONS)
        g = inputs.features
        if inputs.reference is not None:
            r = inputs.reference
            mu2, sigma2, num2 = r.mean(), r.cov(unbiased=ref_cov == "unbiased"), r.num
        elif inputs.reference_stats is not None:
            ref = inputs.reference_stats
            if ref.dim != g.dim:
                raise ConfigError(f"{ref.path} holds {ref.dim}-d statistics, the features are {g.dim}-d",
                                  hint="use reference statistics of the same extractor and feature layer")
            mu2, sigma2, num2 = ref.mu, ref.sigma, ref.num_images
        else:
            raise ConfigError("FID needs reference statistics", hint="pass --ref stats.npz or a dataset path")
        # both sides are covariances already: FeatureStats' own, or a reference load_reference checked
        fd = frechet_distance(g.mean(), g.cov(unbiased=cov == "unbiased"), mu2, sigma2, checked=True)
        return {self.name: {"value": fd.value, "value_raw": fd.raw, "cov": cov, "reference_cov": ref_cov,
                            "reference_num_images": num2}}


FID = FrechetInceptionDistance()
