"""Protocols: every name a suite uses exists, lookups suggest close names, protocols are frozen."""

import dataclasses
import json
import re

import pytest

from sidbench.errors import ConfigError
from sidbench.metrics import PROTOCOLS, get_protocol
from sidbench.metrics.protocols import COCO_CAPTIONS_SHA256, EDM_SEED_SETS


def _suite_protocols():
    from sidbench.suites import coco, digits, digits_t2i, edm

    names = set()
    for module in (coco, digits, digits_t2i, edm):
        for value in vars(module).values():
            names.update(getattr(value, "protocols", ()) or ())
    return names


def test_every_suite_protocol_is_defined():
    names = _suite_protocols()
    assert names, "no suite protocols found"
    assert names <= set(PROTOCOLS), sorted(names - set(PROTOCOLS))


def test_required_protocols_and_fields():
    required = {"edm-fid50k", "sid-fid50k", "is-10split", "is-adm", "is-fidelity", "kid-100x1000", "pr-vgg16",
                "pr-inception-adm", "coco2014-fid30k-clean", "clip-score-vitg14", "digits-fd",
                "digits-t2i-alignment"}
    assert required <= set(PROTOCOLS)
    for name, p in PROTOCOLS.items():
        assert p.name == name and re.fullmatch(r"\d+\.\d+\.\d+", p.version)
        assert p.metric in {"fid", "is", "kid", "pr", "clip_score", "prompt_alignment"} and p.num_images > 0
        assert p.extractor and p.feature_key and p.description and p.source
        assert p.lower_is_better == (p.metric in {"fid", "kid"})
        json.dumps(p.record())  # result records must serialise
        assert p.tag == f"{name}@{p.version}"


def test_protocol_facts_from_the_spec():
    edm = get_protocol("edm-fid50k")
    assert edm.num_images == 50_000 and edm.option("cov") == "unbiased" and edm.option("headline") == "min"
    assert edm.option("seed_sets") == EDM_SEED_SETS == ((0, 49_999), (50_000, 99_999), (100_000, 149_999))
    assert get_protocol("sid-fid50k").option("cov") == "biased"
    assert get_protocol("is-adm").option("split_size") == 5000
    assert get_protocol("is-fidelity").option("shuffle_seed") == 2020
    kidp = get_protocol("kid-100x1000")
    assert (kidp.option("num_subsets"), kidp.option("subset_size"), kidp.option("seed")) == (100, 1000, 2020)
    clip = get_protocol("clip-score-vitg14")
    assert clip.option("scale") == 1.0 and clip.option("text_prefix") == "A photo depicts "
    assert get_protocol("coco2014-fid30k-clean").option("captions_sha256") == COCO_CAPTIONS_SHA256


def test_unknown_name_suggests_close_match():
    with pytest.raises(ConfigError, match="Did you mean 'edm-fid50k'"):
        get_protocol("edm-fid50")
    with pytest.raises(ConfigError, match="unknown metric protocol 'zzz'"):
        get_protocol("zzz")


def test_protocols_are_frozen():
    p = get_protocol("edm-fid50k")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.num_images = 10  # type: ignore[misc]
    with pytest.raises(TypeError):
        p.options["cov"] = "biased"  # type: ignore[index]
    with pytest.raises(TypeError):
        PROTOCOLS["mine"] = p  # type: ignore[index]


# -- every option is read by someone; anything else is refused when a protocol is defined -------------
def _define(metric="fid", **options):
    from sidbench.metrics.protocols import _p

    return _p("mine", "1.0.0", metric, "inception-v3-compat", "pool", 10, "d", "s", **options)


@pytest.mark.parametrize(("metric", "option"), [
    ("fid", "clean_mode"), ("fid", "captions"), ("clip_score", "model"), ("clip_score", "pretrained"),
    ("is", "reference_images"), ("is", "reference"), ("kid", "cov"), ("pr", "num_captions"), ("fid", "Cov"),
])
def test_an_option_nobody_reads_is_refused_at_definition(metric, option):
    with pytest.raises(ConfigError, match=f"option {option} is not read by metric '{metric}'"):
        _define(metric, **{option: 1})


@pytest.mark.parametrize(("options", "message"), [
    ({"headline": "median"}, "unknown headline rule"),
    ({"reference": "somewhere"}, "unknown reference"),
    ({"resize": 64, "crop": "random"}, "crop 'random' is not implemented"),
    ({"crop": "center"}, "crop/resample without resize"),
])
def test_pipeline_option_values_nobody_implements_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        _define("fid", **options)


def test_an_unknown_metric_is_refused_at_definition():
    with pytest.raises(ConfigError, match="unknown metric 'fidd'"):
        _define("fidd")


def test_every_builtin_option_is_allowed_for_its_metric():
    from sidbench.metrics.catalog import get_metric
    from sidbench.metrics.protocols import allowed_options

    for p in PROTOCOLS.values():
        assert set(p.options) <= allowed_options(get_metric(p.metric)), p.name


def _inputs(metric_name, options):
    """Small, valid inputs for a built-in metric, with `options` as the run's options."""
    import numpy as np

    from sidbench.metrics.catalog import get_metric
    from sidbench.metrics.metric import MetricInputs
    from sidbench.metrics.stats import FeatureStats

    class TextEncoder:
        name = "fake-clip"

        def encode_text(self, texts):
            import torch

            return torch.ones(len(texts), 4) + torch.arange(len(texts))[:, None]

    rng = np.random.default_rng(0)
    gen, ref = FeatureStats(keep_features=True), FeatureStats(keep_features=True)
    gen.update(np.abs(rng.standard_normal((30, 4))).astype(np.float32))
    ref.update(np.abs(rng.standard_normal((30, 4))).astype(np.float32) + 0.5)
    p = get_protocol(get_metric(metric_name).default_protocol)
    inputs = MetricInputs(protocol=p, options=options, features=gen, extractor=TextEncoder(), reference=ref,
                          captions=[f"c{i}" for i in range(30)])
    return get_metric(metric_name), inputs


_SMALL = {"is": {"splits": 3}, "kid": {"subset_size": 10, "num_subsets": 3}, "pr": {}, "fid": {},
          "clip_score": {}}


@pytest.mark.parametrize("metric_name", list(_SMALL))
def test_every_declared_option_is_read(metric_name):
    """A nonsense value for each declared option makes `compute` fail: the option is really read."""
    from sidbench.metrics.catalog import get_metric

    metric = get_metric(metric_name)
    _, inputs = _inputs(metric_name, _SMALL[metric_name])
    assert set(metric.compute(inputs)) == set(metric.keys())  # valid options work
    for option in metric.options:
        _, bad = _inputs(metric_name, {**_SMALL[metric_name], option: object()})
        with pytest.raises(ConfigError, match=f"option '{option}'"):
            metric.compute(bad)


def test_overrides_are_limited_to_what_the_metric_reads():
    from sidbench.metrics.protocols import protocol_from_options

    p = get_protocol("kid-100x1000")
    assert protocol_from_options(p, {"subset_size": 20})["subset_size"] == 20
    with pytest.raises(ConfigError, match="cannot be set for metric 'kid'.*Did you mean 'subset_size'"):
        protocol_from_options(p, {"subset_sise": 20})
    with pytest.raises(ConfigError, match="seed_sets cannot be set"):
        protocol_from_options(p, {"seed_sets": ((0, 9),)})
