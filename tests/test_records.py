"""Result records: the shipped schema, round trips, and one-line errors that name the bad field.

The schema file is the definition; `sidbench.records` interprets it. Where the `jsonschema`
package is installed, it is the independent oracle: it must accept and refuse the same records.
"""

from __future__ import annotations

import copy
import json
import math
from importlib import resources

import pytest

from sidbench.jsonsafe import decode_nonfinite, dumps
from sidbench.records import (
    RECORD_SCHEMA_VERSION,
    RecordError,
    _check_keywords,
    load_schema,
    read_record,
    result_record,
    validate_record,
    write_record,
)

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64


def _entry(value, protocol="digits-fd", lower_is_better=True, **more):
    """A metric entry shaped like sidbench.metrics.evaluate's."""
    return {"value": value, "protocol": {"name": protocol, "version": "1.0.0"}, "metric_version": "1.0.0",
            "num_images": 2000, "protocol_num_images": 2000, "full_protocol": True, "protocol_deviations": [],
            "extractor": "digits-classifier", "extractor_sha256": SHA_B, "reference_sha256": SHA_C,
            "lower_is_better": lower_is_better, "dtype": "float32", **more}


def measured(**changes):
    fields = dict(
        suite={"name": "digits", "version": "1.0.0"},
        method={"name": "sid", "version": "1.0.0", "label": "sid-digits", "role": "generator", "nfe": 1},
        metrics={"fid": _entry(31.5), "is": _entry(9.4, protocol="digits-is", lower_is_better=False,
                                                   reference_sha256=None)},
        networks={"teacher_sha256": SHA_A, "generator_sha256": SHA_B},
        environment={"torch": "2.4.0", "cuda": None, "device": "cpu", "processes": 2, "batch_per_gpu": 16},
        cost={"train_seconds": 100.0, "evaluate_seconds": 20.0, "generate_seconds": 0.5},
        config_hash="0123456789abcdef", seeds="0-1999", extra={"step": 100, "kimg": 3.2, "run": "sid-digits"})
    fields.update(changes)
    return result_record(**fields)


CITATION = {"paper": "Score identity Distillation (Zhou et al., ICML 2024)", "arxiv": "2404.04057",
            "table": "README FID table", "source_tag": "code", "where": "mingyuanzhou/SiD@01fbb13c README.md"}


def published(**changes):
    fields = dict(
        suite={"name": "cifar10-uncond", "version": "1.0.0"},
        method={"name": "sid", "version": None, "label": "SiD", "role": "generator", "nfe": 1,
                "teacher_nfe": 35},
        metrics={"fid": {"value": 1.923, "protocol": {"name": "sid-fid50k", "version": "1.0.0"},
                         "lower_is_better": True, "num_images": 50000, "protocol_match": "stated"}},
        source="published", citation=CITATION, networks={}, environment=None, cost=None)
    fields.update(changes)
    return result_record(**fields)


def _json(record):
    return json.loads(dumps(record))


# --- the schema file -----------------------------------------------------------------------------

def test_the_schema_ships_as_package_data_and_every_keyword_is_implemented():
    shipped = resources.files("sidbench").joinpath(f"schemas/record-v{RECORD_SCHEMA_VERSION}.schema.json")
    assert shipped.is_file()
    schema = json.loads(shipped.read_text(encoding="utf-8"))
    assert schema["properties"]["schema_version"] == {"const": RECORD_SCHEMA_VERSION}
    assert load_schema() == schema  # _check_keywords ran over the whole file


def test_a_schema_keyword_that_is_not_implemented_is_refused_not_ignored():
    with pytest.raises(RecordError, match="keyword 'maxLength' is not implemented"):
        _check_keywords({"type": "object", "properties": {"label": {"type": "string", "maxLength": 3}}}, "#")


# --- building and round trips --------------------------------------------------------------------

def test_measured_record_round_trips_through_a_file(tmp_path):
    rec = measured()
    path = write_record(tmp_path / "r.json", rec)
    assert read_record(path) == _json(rec)
    assert rec["schema"] == "sidbench.result" and rec["source"] == "measured" and rec["citation"] is None
    assert rec["config_hash"] == "0123456789abcdef" and rec["kimg"] == 3.2 and rec["step"] == 100
    for entry in rec["metrics"].values():  # each metric carries its seeds, reference and extractor digests
        assert entry["seeds"] == "0-1999" and entry["extractor_sha256"] == SHA_B
    assert rec["metrics"]["is"]["reference_sha256"] is None


def test_non_finite_values_round_trip_as_strings(tmp_path):
    rec = measured(metrics={"fid": _entry(math.inf), "kid": _entry(math.nan, protocol="digits-kid")})
    stored = read_record(write_record(tmp_path / "r.json", rec))
    assert stored["metrics"]["fid"]["value"] == "inf" and stored["metrics"]["kid"]["value"] == "nan"
    back = decode_nonfinite(stored)
    assert back["metrics"]["fid"]["value"] == math.inf and math.isnan(back["metrics"]["kid"]["value"])


def test_published_record_round_trips_and_keeps_its_citation(tmp_path):
    rec = published()
    assert read_record(write_record(tmp_path / "p.json", rec)) == _json(rec)
    assert rec["citation"] == CITATION and rec["environment"] is None and rec["cost"] is None


def test_cost_defaults_to_the_sum_of_the_stages_and_device_hours_to_wall_time_times_processes():
    rec = measured()
    wall = 100.0 + 20.0 + 0.5
    assert rec["cost"]["wall_seconds"] == wall
    assert rec["cost"]["device_hours"] == pytest.approx(wall * 2 / 3600, abs=1e-6)
    given = measured(cost={"wall_seconds": 7.0, "device_hours": 1.5})
    assert given["cost"] == {"wall_seconds": 7.0, "device_hours": 1.5}


def test_seeds_come_from_the_images_or_the_seed_sets():
    rec = measured(seeds=None, extra={"images": {"kind": "GeneratorImageSource", "seeds": "0-99"}})
    assert rec["metrics"]["fid"]["seeds"] == "0-99"
    sets = _entry(2.0, seed_sets=[[0, 49999], [50000, 99999]])
    rec = measured(metrics={"fid": sets})
    assert rec["metrics"]["fid"]["seeds"] == "0-49999,50000-99999"


def test_a_teacher_rows_teacher_nfe_is_its_nfe():
    rec = measured(method={"name": "teacher-heun", "version": "1", "label": "teacher heun-18",
                           "role": "teacher", "nfe": 35})
    assert rec["method"]["teacher_nfe"] == 35


def test_records_are_never_replaced(tmp_path):
    path = write_record(tmp_path / "r.json", measured())
    before = path.read_bytes()
    with pytest.raises(RecordError, match="exists; records are never edited"):
        write_record(path, measured(config_hash="ffffffffffffffff"))
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


# --- validation errors name the field ------------------------------------------------------------

def _without(record, *path):
    bad = copy.deepcopy(_json(record))
    node = bad
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return bad


@pytest.mark.parametrize("path", [("suite",), ("metrics",), ("metrics", "fid", "protocol"),
                                  ("metrics", "fid", "value"), ("metrics", "fid", "seeds"),
                                  ("metrics", "fid", "extractor_sha256"), ("environment", "torch"),
                                  ("environment", "processes"), ("cost", "wall_seconds"),
                                  ("networks", "teacher_sha256"), ("method", "role"), ("method", "nfe"),
                                  ("sidbench", "git_commit")])
def test_a_missing_field_is_named(path):
    with pytest.raises(RecordError) as err:
        validate_record(_without(measured(), *path))
    assert str(err.value).startswith(f"{'.'.join(path)}: missing"), str(err.value)
    assert "\n" not in str(err.value)


def _with(record, value, *path):
    bad = copy.deepcopy(_json(record))
    node = bad
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return bad


@pytest.mark.parametrize("path, value, message", [
    (("metrics", "fid", "value"), "abc", "metrics.fid.value: expected a number or one of nan, inf, -inf"),
    (("metrics", "fid", "value"), True, "metrics.fid.value: expected a number"),
    (("metrics", "fid", "num_images"), True, "metrics.fid.num_images: expected an integer"),
    (("metrics", "fid", "num_images"), 2000.5, "metrics.fid.num_images: expected an integer"),
    (("metrics", "fid", "lower_is_better"), "yes", "metrics.fid.lower_is_better: expected true or false"),
    (("metrics", "fid", "protocol", "version"), "1", "metrics.fid.protocol.version: \"1\" does not match"),
    (("metrics", "fid", "reference_sha256"), "abc", "metrics.fid.reference_sha256: \"abc\" does not match"),
    (("method", "nfe"), "1", "method.nfe: expected an integer or null"),
    (("method", "nfe"), 0, "method.nfe: 0 is below the minimum 1"),
    (("method", "role"), "student", "method.role: must be one of teacher, generator"),
    (("source",), "measurd",
     "source: must be one of measured, published, not \"measurd\". Did you mean 'measured'"),
    (("kimg",), -1, "kimg: -1 is below the minimum 0"),
    (("environment",), None, "environment: expected an object, got null"),
    (("citation",), CITATION, "citation: expected null"),
    (("suite", "version"), None, "suite.version: expected a string"),
])
def test_a_mistyped_field_is_named(path, value, message):
    with pytest.raises(RecordError) as err:
        validate_record(_with(measured(), value, *path))
    assert str(err.value).startswith(message), str(err.value)


def test_an_unknown_field_is_refused_with_the_nearest_name():
    bad = _json(measured())
    bad["metrcis"] = bad.pop("metrics")
    with pytest.raises(RecordError, match=r"metrcis: not a field of record schema v1. Did you mean 'metrics"):
        validate_record(bad)
    with pytest.raises(RecordError, match="wall_time: not a field"):
        measured(extra={"wall_time": 3})


def test_a_newer_schema_version_asks_for_an_upgrade_and_another_schema_is_refused():
    with pytest.raises(RecordError, match="schema_version 2 is newer than this sidbench reads"):
        validate_record(_with(measured(), 2, "schema_version"))
    with pytest.raises(RecordError, match="not a sidbench result record"):
        validate_record(_with(measured(), "sidbench.eval", "schema"))


def test_a_published_record_needs_a_full_citation():
    with pytest.raises(RecordError, match="citation: a published number needs its citation"):
        published(citation=None)
    with pytest.raises(RecordError, match="citation.source_tag: must be one of code, paper, secondary"):
        published(citation={**CITATION, "source_tag": "recalled"})
    with pytest.raises(RecordError, match="citation.arxiv: \"2404.4057x\" does not match"):
        published(citation={**CITATION, "arxiv": "2404.4057x"})
    with pytest.raises(RecordError, match="citation.table: missing"):
        published(citation={k: v for k, v in CITATION.items() if k != "table"})


def test_a_measured_record_needs_environment_cost_and_versions():
    with pytest.raises(RecordError, match="environment: expected an object"):
        measured(environment=None)
    with pytest.raises(RecordError, match="method.version: expected a string"):
        measured(method={"name": "sid", "version": None, "label": "x", "role": "generator", "nfe": 1})
    with pytest.raises(RecordError, match="metrics.fid.full_protocol: missing"):
        measured(metrics={"fid": {k: v for k, v in _entry(3.0).items() if k != "full_protocol"}})


def test_reading_a_file_that_is_not_a_record_names_it(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(RecordError, match="x.json is not JSON"):
        read_record(tmp_path / "x.json")
    with pytest.raises(RecordError, match="does not exist"):
        read_record(tmp_path / "missing.json")
    (tmp_path / "y.json").write_text(json.dumps(_without(measured(), "suite")))
    with pytest.raises(RecordError, match=r"y.json: suite: missing"):
        read_record(tmp_path / "y.json")


# --- the independent oracle ------------------------------------------------------------------------

def _cases():
    good = [_json(measured()), _json(published()),
            _json(measured(metrics={"fid": _entry(math.nan)}))]
    bad = [_without(measured(), "suite"), _with(measured(), "abc", "metrics", "fid", "value"),
           _with(measured(), "student", "method", "role"), _with(measured(), CITATION, "citation"),
           _with(published(), None, "citation"), _with(published(), "recalled", "citation", "source_tag"),
           _with(measured(), 0, "method", "nfe"), _with(measured(), True, "metrics", "fid", "num_images"),
           _with(measured(), {}, "metrics"), _with(measured(), "1", "metrics", "fid", "protocol", "version"),
           _without(measured(), "metrics", "fid", "full_protocol"),
           _without(published(), "citation", "paper"),
           {**_json(measured()), "metrcis": {}}]
    return [(c, True) for c in good] + [(c, False) for c in bad]


@pytest.mark.parametrize("case, valid", _cases())
def test_jsonschema_agrees_with_our_validator(case, valid):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(load_schema())
    jsonschema.Draft202012Validator.check_schema(load_schema())
    assert validator.is_valid(case) == valid
    if valid:
        validate_record(case)
    else:
        with pytest.raises(RecordError):
            validate_record(case)
