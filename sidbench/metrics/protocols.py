"""Named, versioned metric protocols: what makes a number comparable with a paper's.

A protocol pins the metric, the feature extractor and layer, the image count, the seeds, the
split/subset rules and the covariance convention. Results store `protocol.name` and
`protocol.version` (`protocol.tag`). Change anything that moves the numbers -> bump the MAJOR
version (leaderboards then start a new table).

Every option is read by someone: the metric's implementation (`Metric.options`) or the
evaluation pipeline (`PIPELINE_OPTIONS`: seeds, headline rule, preprocessing, and for metrics
with a reference, which reference and how many images; `captions_sha256`). Defining a protocol
with any other option, or with a headline rule or reference kind that does not exist, is an error,
so an option can never be declared and silently ignored.

Extractor names (resolved by `sidbench.metrics.extractors`):
- `inception-v3-compat`: torch-fidelity's 2015 TF Inception port; keys `pool` (2048) and `logits` (1008,
  bias-free, torch-fidelity's `logits_unbiased`).
- `clean-fid-inception`: NVIDIA's TorchScript Inception through clean-fid's "clean" resize; key `pool`.
- `vgg16-fc2-relu`: torchvision VGG-16 IMAGENET1K_V1, TF-bilinear resize to 224; key `fc2_relu`.
- `open-clip-vitg14`: open_clip ViT-g-14 `laion2b_s12b_b42k` fp32; keys `image`, `text`.
- `digits-classifier`: the embedded suite's classifier; keys `features` (128) and `logits` (10).
The extractor name (with its weights' sha256 in every record) pins the network, its weights and
its preprocessing (clean-fid's "clean" mode, open_clip's model and pretrained tag), so protocols
do not repeat them as options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sidbench.errors import ConfigError
from sidbench.jsonsafe import encode_nonfinite
from sidbench.registry import suggest

# Read by evaluate / evaluate_seed_sets / the eval command for every metric.
COMMON_OPTIONS = frozenset({"seed_sets", "headline", "resize", "crop", "resample", "captions_sha256"})
# Read by the pipeline for metrics that compare against a reference.
REFERENCE_OPTIONS = frozenset({"reference", "reference_images"})
PIPELINE_OPTIONS = COMMON_OPTIONS | REFERENCE_OPTIONS
HEADLINE_RULES = ("min", "max", "mean", "single", "best-checkpoint")
REFERENCE_SOURCES = ("dataset", "adm-virtual-arr_0")  # images of a dataset / ADM's VIRTUAL batch arr_0

EDM_SEED_SETS = ((0, 49_999), (50_000, 99_999), (100_000, 149_999))
COCO_CAPTIONS_SHA256 = "edabd2a556026cbf5d36a5fffa35ad43d7ba71b72f6d640b727c1edefb7f1945"
# sidbench.data.captions.digit_captions(2000), one caption per line, each ending in LF
DIGITS_T2I_CAPTIONS_SHA256 = "ec825cb8597c6a21673dc22b022623d0424b2215be6b7f5864de32b1d65f7775"


@dataclass(frozen=True)
class Protocol:
    name: str
    version: str
    metric: str  # a registered metric's name: "fid" | "is" | "kid" | "pr" | "clip_score" |
    #              "prompt_alignment" | a plugin's
    extractor: str
    feature_key: str
    num_images: int
    lower_is_better: bool
    description: str
    source: str
    options: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        # A plugin may pass its Metric object (its module is still being imported, so the registry
        # cannot find it yet); the protocol keeps the name.
        given = self.metric
        impl = given if hasattr(given, "compute") else _implementation(given)
        object.__setattr__(self, "metric", impl.name)
        if not isinstance(self.options, MappingProxyType):
            object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        check_options(self, impl)

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    def record(self) -> dict[str, Any]:
        """JSON-ready description for result records."""
        return {"name": self.name, "version": self.version, "metric": self.metric,
                "extractor": self.extractor, "feature_key": self.feature_key, "num_images": self.num_images,
                "lower_is_better": self.lower_is_better, "options": encode_nonfinite(dict(self.options))}


def _implementation(metric: str) -> Any:
    from sidbench.metrics.catalog import get_metric

    return get_metric(metric)


def allowed_options(metric: Any) -> frozenset[str]:
    """The option names a protocol of `metric` may set: what its implementation and the pipeline read."""
    pipeline = PIPELINE_OPTIONS if metric.reference != "none" else COMMON_OPTIONS
    return frozenset(metric.options) | pipeline


def check_options(p: Protocol, metric: Any) -> None:
    """Refuse option names nobody reads and pipeline option values nobody implements."""
    allowed = allowed_options(metric)
    unknown = sorted(set(p.options) - allowed)
    if unknown:
        first = unknown[0]
        many = len(unknown) > 1
        raise ConfigError(f"protocol '{p.name}': option{'s' if many else ''} {', '.join(unknown)} "
                          f"{'are' if many else 'is'} not read by metric '{p.metric}' or the "
                          f"evaluation.{suggest(first, sorted(allowed))}",
                          hint=f"options it reads: {', '.join(sorted(allowed))}")
    rule = p.options.get("headline", "mean")
    if rule not in HEADLINE_RULES:
        raise ConfigError(f"protocol '{p.name}': unknown headline rule {rule!r}",
                          hint=f"use one of {', '.join(HEADLINE_RULES)}")
    ref = p.options.get("reference", "dataset")
    if ref not in REFERENCE_SOURCES:
        raise ConfigError(f"protocol '{p.name}': unknown reference {ref!r}",
                          hint=f"use one of {', '.join(REFERENCE_SOURCES)}")
    if p.options.get("crop", "center") != "center":
        raise ConfigError(f"protocol '{p.name}': crop {p.options['crop']!r} is not implemented",
                          hint="the only crop is 'center' (with resize)")
    if ("crop" in p.options or "resample" in p.options) and "resize" not in p.options:
        raise ConfigError(f"protocol '{p.name}': crop/resample without resize", hint="add resize=SIZE")


def _p(name: str, version: str, metric: str, extractor: str, feature_key: str, num_images: int,
       description: str, source: str, lower_is_better: bool = True, **options: Any) -> Protocol:
    return Protocol(name=name, version=version, metric=metric, extractor=extractor, feature_key=feature_key,
                    num_images=num_images, lower_is_better=lower_is_better, description=description,
                    source=source, options=MappingProxyType(options))


_ALL = (
    _p("edm-fid50k", "1.0.0", "fid", "inception-v3-compat", "pool", 50_000,
       "FID of 50k generated images vs the dataset's reference stats; unbiased covariance; "
       "three seed sets, headline = minimum, all three recorded",
       "Karras et al. 2022 (EDM), fid.py", cov="unbiased", seed_sets=EDM_SEED_SETS, headline="min"),
    _p("sid-fid50k", "1.0.0", "fid", "inception-v3-compat", "pool", 50_000,
       "FID of 50k images (seeds 0-49999) with biased (N) covariance, as SiD's in-training metric; "
       "reference stats as loaded (EDM's npz is unbiased: SiD's --data_stat mix); "
       "headline = best checkpoint over training",
       "Zhou et al. 2024 (SiD), training metrics", cov="biased", reference_cov="unbiased",
       seed_sets=((0, 49_999),), headline="best-checkpoint"),
    _p("is-10split", "1.0.0", "is", "inception-v3-compat", "logits", 50_000,
       "Inception Score, softmax of bias-free logits, 10 splits in index order; mean and std",
       "Zhou et al. 2024 (SiD) / StyleGAN2-ADA metrics", lower_is_better=False, mode="sid", splits=10,
       seed_sets=((0, 49_999),)),
    _p("is-adm", "1.0.0", "is", "inception-v3-compat", "logits", 50_000,
       "Inception Score over consecutive splits of 5,000 images in index order; mean only",
       "Dhariwal & Nichol 2021 (ADM), evaluations/evaluator.py", lower_is_better=False, mode="adm",
       split_size=5000, seed_sets=((0, 49_999),)),
    _p("is-fidelity", "1.0.0", "is", "inception-v3-compat", "logits", 50_000,
       "Inception Score as torch-fidelity 0.4.0: RandomState(2020) permutation, then 10 splits",
       "torch-fidelity 0.4.0 metric_isc.py", lower_is_better=False, mode="fidelity", splits=10,
       shuffle_seed=2020, seed_sets=((0, 49_999),)),
    _p("kid-100x1000", "1.0.0", "kid", "inception-v3-compat", "pool", 50_000,
       "KID, polynomial kernel (x.y/d + 1)^3, unbiased MMD^2, 100 subsets of 1,000 by RandomState(2020)",
       "Binkowski et al. 2018; torch-fidelity 0.4.0 defaults", num_subsets=100, subset_size=1000, degree=3,
       coef0=1.0, seed=2020, seed_sets=((0, 49_999),)),
    _p("pr-vgg16", "1.0.0", "pr", "vgg16-fc2-relu", "fc2_relu", 50_000,
       "Precision/recall, k=3 manifolds in VGG-16 fc2_relu space vs the training set, float32 distances",
       "Kynkaanniemi et al. 2019; torch-fidelity 0.4.0 metric_prc.py", lower_is_better=False, k=3,
       dtype="float32", reference="dataset", seed_sets=((0, 49_999),)),
    _p("pr-inception-adm", "1.0.0", "pr", "inception-v3-compat", "pool", 50_000,
       "Precision/recall, k=3 in Inception pool space vs ADM's 10k VIRTUAL reference images (arr_0); "
       "float32 distances (ADM uses float16: not bit-equal)",
       "Dhariwal & Nichol 2021 (ADM) evaluator; SiD README", lower_is_better=False, k=3, dtype="float32",
       reference="adm-virtual-arr_0", reference_images=10_000, seed_sets=((0, 49_999),)),
    _p("coco2014-fid30k-clean", "1.0.0", "fid", "clean-fid-inception", "pool", 30_000,
       "FID of 30k images from the fixed GigaGAN caption list (caption i, seed i) vs all 40,504 val2014 "
       "images; center crop + LANCZOS to 256, clean-fid 'clean' mode",
       "Kang et al. 2023 (GigaGAN) evaluation; SiD-LSG", cov="unbiased", resize=256, crop="center",
       resample="lanczos", captions_sha256=COCO_CAPTIONS_SHA256, reference_images=40_504,
       seed_sets=((0, 29_999),)),
    _p("clip-score-vitg14", "1.0.0", "clip_score", "open-clip-vitg14", "image", 30_000,
       "Mean cosine similarity of open_clip ViT-g-14 (laion2b_s12b_b42k, fp32) image and text embeddings; "
       "text 'A photo depicts ' + caption; images center-cropped + LANCZOS to 256 first (as for FID); "
       "reported as a fraction, no clamp",
       "Kang et al. 2023 (GigaGAN) evaluation; SiD-LSG", lower_is_better=False, scale=1.0, clamp=False,
       text_prefix="A photo depicts ", resize=256, crop="center", resample="lanczos",
       captions_sha256=COCO_CAPTIONS_SHA256, seed_sets=((0, 29_999),)),
    _p("digits-fd", "1.0.0", "fid", "digits-classifier", "features", 2_000,
       "Frechet distance in the digits classifier's 128-d feature space, 2,000 images vs all 1,797 digits",
       "sidbench embedded suite", cov="unbiased", seed_sets=((0, 1_999),), headline="single"),
    _p("digits-t2i-alignment", "1.0.0", "prompt_alignment", "digits-classifier", "logits", 2_000,
       "Prompt alignment (not CLIP score): mean softmax probability the digits classifier gives the digit "
       "caption i asks for, over 2,000 images; caption i = digit_captions(2000)[i] (digit i % 10), seed i; "
       "also argmax accuracy",
       "sidbench digits-t2i suite", lower_is_better=False, captions_sha256=DIGITS_T2I_CAPTIONS_SHA256,
       seed_sets=((0, 1_999),)),
    _p("digits-is", "1.0.0", "is", "digits-classifier", "logits", 2_000,
       "Inception-style score from the digits classifier's 10 logits, 10 splits in index order (max 10)",
       "sidbench embedded suite", lower_is_better=False, mode="sid", splits=10, seed_sets=((0, 1_999),)),
    _p("digits-kid", "1.0.0", "kid", "digits-classifier", "features", 2_000,
       "KID in the digits classifier's feature space, 100 subsets of 1,000 by RandomState(2020); kernel "
       "(x.y / 4096 + 1)^3: the classifier's features have mean squared norm ~4.6e3 (x.y/d ~ 14), where the "
       "usual 1/d scale makes the cubic kernel's variance swamp the MMD",
       "sidbench embedded suite", num_subsets=100, subset_size=1000, degree=3, gamma=1 / 4096, coef0=1.0,
       seed=2020,
       seed_sets=((0, 1_999),)),
    _p("digits-pr", "1.0.0", "pr", "digits-classifier", "features", 2_000,
       "Precision/recall, k=3 manifolds in the digits classifier's feature space vs all 1,797 digits",
       "sidbench embedded suite", lower_is_better=False, k=3, dtype="float64", reference="dataset",
       seed_sets=((0, 1_999),)),
)

PROTOCOLS: MappingProxyType = MappingProxyType({p.name: p for p in _ALL})


def _plugin_protocols() -> dict[str, Protocol]:
    """Protocols that registered (plugin) metrics bring along (`Metric.protocols`)."""
    from sidbench.metrics.catalog import get_metric, metric_names

    found: dict[str, Protocol] = {}
    for name in metric_names():
        for p in getattr(get_metric(name), "protocols", ()) or ():
            if p.name in PROTOCOLS:
                raise ConfigError(f"metric '{name}' redefines the built-in protocol '{p.name}'",
                                  hint="give the plugin's protocol its own name")
            found[p.name] = p
    return found


def get_protocol(name: str) -> Protocol:
    """Look up a protocol by name (built-in, then plugins'); unknown names get a close-match suggestion."""
    if name in PROTOCOLS:
        return PROTOCOLS[name]
    plugins = _plugin_protocols()
    if name in plugins:
        return plugins[name]
    known = [*PROTOCOLS, *plugins]
    raise ConfigError(f"unknown metric protocol '{name}'.{suggest(name, known)}",
                      hint=f"known protocols: {', '.join(known)}")


def protocol_from_options(p: Protocol, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The protocol's options with a run's overrides; only options the metric itself reads may change."""
    metric = _implementation(p.metric)
    bad = sorted(set(overrides) - set(metric.options))
    if bad:
        raise ConfigError(f"option{'s' if len(bad) > 1 else ''} {', '.join(bad)} cannot be set for metric "
                          f"'{p.metric}'.{suggest(bad[0], sorted(metric.options))}",
                          hint=f"it reads: {', '.join(sorted(metric.options)) or 'no options'}")
    return {**dict(p.options), **dict(overrides)}
