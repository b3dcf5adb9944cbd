"""Protocols: every name a suite uses exists, lookups suggest close names, protocols are frozen."""

import dataclasses
import json
import re

import pytest

from sidbench.errors import ConfigError
from sidbench.metrics import PROTOCOLS, get_protocol
from sidbench.metrics.protocols import COCO_CAPTIONS_SHA256, EDM_SEED_SETS


def _suite_protocols():
    from sidbench.suites import coco, digits, edm

    names = set()
    for module in (coco, digits, edm):
        for value in vars(module).values():
            names.update(getattr(value, "protocols", ()) or ())
    return names


def test_every_suite_protocol_is_defined():
    names = _suite_protocols()
    assert names, "no suite protocols found"
    assert names <= set(PROTOCOLS), sorted(names - set(PROTOCOLS))


def test_required_protocols_and_fields():
    required = {"edm-fid50k", "sid-fid50k", "is-10split", "is-adm", "is-fidelity", "kid-100x1000", "pr-vgg16",
                "pr-inception-adm", "coco2014-fid30k-clean", "clip-score-vitg14", "digits-fd"}
    assert required <= set(PROTOCOLS)
    for name, p in PROTOCOLS.items():
        assert p.name == name and re.fullmatch(r"\d+\.\d+\.\d+", p.version)
        assert p.metric in {"fid", "is", "kid", "pr", "clip_score"} and p.num_images > 0
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
