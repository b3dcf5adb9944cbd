"""Result records: the JSON that every number travels in, measured here or published in a paper.

A record carries everything needed to judge whether two numbers are comparable: harness
version and commit, suite and method with versions, the resolved-config hash, the networks'
sha256, each metric with its protocol (name + version), image count, seeds, reference and
extractor sha256, the environment and the cost, and its `source`: `measured` (by this
harness) or `published` (copied from a paper, with a citation whose `source_tag` says how
the number reached us: `code` = the authors' repository, `paper` = the paper itself,
`secondary` = not confirmed from a primary source).

The schema is the JSON Schema file shipped in `sidbench/schemas/record-v1.schema.json`;
`validate_record` reads it (a small interpreter of the keywords that file uses, so the file
is the one definition), and every error names the field: ``metrics.fid.value: expected a
number, got 'abc'``. `write_record` writes atomically and never replaces a file: a record,
once written, is never edited (a fix is a new record).
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sidbench import __version__
from sidbench.errors import ConfigError
from sidbench.jsonsafe import dumps, encode_nonfinite

RECORD_SCHEMA = "sidbench.result"
RECORD_SCHEMA_VERSION = 1
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
SOURCES = ("measured", "published")
SOURCE_TAGS = ("code", "paper", "secondary")
# Top-level fields a caller may set besides the ones `result_record` builds.
OPTIONAL_FIELDS = ("kimg", "step", "seeds", "images", "run", "notes")
_SECONDS = ("train_seconds", "generate_seconds", "evaluate_seconds")


class RecordError(ConfigError):
    """A record that does not follow its schema; the message names the field."""


def schema_path(version: int = RECORD_SCHEMA_VERSION) -> Path:
    """The JSON Schema file of record schema `version` (shipped as package data)."""
    return SCHEMA_DIR / f"record-v{version}.schema.json"


@functools.lru_cache(maxsize=4)
def load_schema(version: int = RECORD_SCHEMA_VERSION) -> dict[str, Any]:
    """The parsed schema; its keywords are checked, so none is ever silently ignored."""
    path = schema_path(version)
    if not path.is_file():
        raise RecordError(f"record schema version {version} is not known to sidbench {__version__}",
                          hint=f"this sidbench reads version {RECORD_SCHEMA_VERSION}; upgrade sidbench")
    schema = json.loads(path.read_text(encoding="utf-8"))
    _check_keywords(schema, "#")
    return schema


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the source tree sidbench runs from, or None outside a git checkout."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


# --- building ------------------------------------------------------------------------------------

def _seeds_of(entry: Mapping[str, Any], seeds: str | None) -> str | None:
    sets = entry.get("seed_sets")
    if sets:
        return ",".join(f"{lo}-{hi}" if hi != lo else str(lo) for lo, hi in sets)
    return entry.get("seeds", seeds)


def _metric_entries(metrics: Mapping[str, Any], seeds: str | None, measured: bool) -> dict[str, Any]:
    """Each metric as `evaluate` returns it, with the fields a record requires filled in."""
    out: dict[str, Any] = {}
    for key, entry in metrics.items():
        if not isinstance(entry, Mapping):
            raise RecordError(f"metrics.{key}: expected an object (value, protocol, ...), got {entry!r}")
        e = dict(entry)
        if measured:
            e["seeds"] = _seeds_of(e, seeds)
            e.setdefault("reference_sha256", None)  # IS and CLIP score have no reference
            e.setdefault("extractor_sha256", None)
        else:
            e.setdefault("num_images", None)
        out[key] = e
    return out


def _cost(cost: Mapping[str, Any] | None, environment: Mapping[str, Any] | None) -> dict[str, Any]:
    """wall_seconds defaults to the sum of the train/generate/evaluate seconds given, device_hours to
    wall time x processes (the one device per process that the trainer uses)."""
    c = dict(cost or {})
    if "wall_seconds" not in c:
        c["wall_seconds"] = round(sum(float(c[k]) for k in _SECONDS if isinstance(c.get(k), (int, float))), 2)
    if "device_hours" not in c:
        processes = (environment or {}).get("processes")
        c["device_hours"] = round(c["wall_seconds"] * processes / 3600, 6) \
            if isinstance(processes, int) and isinstance(c["wall_seconds"], (int, float)) else None
    return c


def result_record(*, suite: Mapping[str, Any], method: Mapping[str, Any], metrics: Mapping[str, Any],
                  source: str = "measured", citation: Mapping[str, Any] | None = None,
                  networks: Mapping[str, Any] | None = None, environment: Mapping[str, Any] | None = None,
                  cost: Mapping[str, Any] | None = None, config_hash: str | None = None,
                  seeds: str | None = None, created: str | None = None,
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Assemble and validate a record (schema version 1); raises `RecordError` naming the bad field.

    metrics: key -> the entry `sidbench.metrics.evaluate` returns (value, protocol, num_images,
    extractor_sha256, reference_sha256, ...); `seeds` (or `extra["images"]["seeds"]`) fills each
    measured entry's seeds. method: name, version, label (the row's name), role ("teacher" or
    "generator"), nfe (network evaluations per image) and optionally teacher_nfe; a teacher row's
    teacher_nfe defaults to its nfe. cost: wall_seconds and device_hours default as `_cost` says.
    extra: any of OPTIONAL_FIELDS (kimg, step, seeds, images, run, notes); `config_hash` there is
    accepted too. Published records need `citation` (paper, arxiv, table, source_tag).
    """
    if source not in SOURCES:
        raise RecordError(f"source: must be one of {', '.join(SOURCES)}, not {source!r}")
    measured = source == "measured"
    if not measured and citation is None:
        raise RecordError("citation: a published number needs its citation (paper, arxiv, table, source_tag)")
    fields = dict(extra or {})
    config_hash = fields.pop("config_hash", config_hash)
    unknown = sorted(set(fields) - set(OPTIONAL_FIELDS))
    if unknown:
        raise RecordError(f"{unknown[0]}: not a field of record schema v{RECORD_SCHEMA_VERSION}",
                          hint=f"optional fields: {', '.join(OPTIONAL_FIELDS)}")
    images = fields.get("images")
    seeds = seeds or fields.get("seeds") or (images.get("seeds") if isinstance(images, Mapping) else None)
    m = dict(method)
    if m.get("role") == "teacher":
        m.setdefault("teacher_nfe", m.get("nfe"))
    record: dict[str, Any] = {
        "schema": RECORD_SCHEMA,
        "schema_version": RECORD_SCHEMA_VERSION,
        "created": created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "citation": dict(citation) if citation is not None else None,
        "sidbench": {"version": __version__, "git_commit": git_commit()},
        "suite": dict(suite),
        "method": m,
        "config_hash": config_hash,
        "networks": dict(networks or {}),
        "metrics": _metric_entries(metrics, seeds, measured),
        "environment": dict(environment) if environment is not None else None,
        "cost": _cost(cost, environment) if measured else (dict(cost) if cost is not None else None),
        **fields,
    }
    validate_record(record)
    return record


# --- validating ----------------------------------------------------------------------------------

def validate_record(record: Any, where: str | None = None) -> None:
    """Raise `RecordError` naming the first field that breaks the record's schema (and how many more)."""
    prefix = f"{where}: " if where else ""
    if not isinstance(record, Mapping):
        raise RecordError(f"{prefix}a record is a JSON object, not {type(record).__name__}")
    if record.get("schema") != RECORD_SCHEMA:
        raise RecordError(f"{prefix}schema: {record.get('schema')!r} is not a sidbench result record",
                          hint=f"a record has \"schema\": \"{RECORD_SCHEMA}\"")
    version = record.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise RecordError(f"{prefix}schema_version: expected an integer, got {version!r}")
    if version > RECORD_SCHEMA_VERSION:
        raise RecordError(f"{prefix}schema_version {version} is newer than this sidbench reads "
                          f"({RECORD_SCHEMA_VERSION})", hint="upgrade sidbench")
    schema = load_schema(version)
    errors = list(dict.fromkeys(_Validator(schema).errors(encode_nonfinite(dict(record)))))
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise RecordError(f"{prefix}{errors[0]}{more}")


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """A record file, validated (JSON as stored: non-finite values stay 'nan' / 'inf' strings)."""
    p = Path(path)
    try:
        record = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"record {p} does not exist", hint="give the path of a record .json") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"record {p} is not JSON ({exc})") from None
    validate_record(record, where=str(p))
    return record


def write_record(path: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Validate, then write `record` atomically to a new file; an existing file is never replaced."""
    from sidbench.fileio import atomic_path

    validate_record(record)
    final = Path(path)
    if final.exists():
        raise RecordError(f"record {final} exists; records are never edited",
                          hint="write the corrected record under a new name")
    with atomic_path(final.with_name(final.name + ".new")) as tmp:
        tmp.write_text(dumps(record) + "\n", encoding="utf-8")
    staged = final.with_name(final.name + ".new")
    try:
        os.link(staged, final)  # fails if `final` appeared meanwhile: exclusive, and atomic
    except FileExistsError:
        raise RecordError(f"record {final} exists; records are never edited",
                          hint="write the corrected record under a new name") from None
    finally:
        staged.unlink(missing_ok=True)
    return final


def metric_protocols(record: Mapping[str, Any]) -> dict[str, str]:
    """metric key -> 'protocol@version' of one record."""
    return {k: f"{m['protocol']['name']}@{m['protocol']['version']}" for k, m in record["metrics"].items()}


# --- the JSON Schema subset the record schema uses -------------------------------------------------

_ANNOTATIONS = frozenset({"$schema", "$id", "title", "description", "$comment"})
_KEYWORDS = frozenset({"type", "const", "enum", "pattern", "minLength", "minimum", "required", "properties",
                       "additionalProperties", "propertyNames", "minProperties", "items", "anyOf", "allOf",
                       "if", "then", "$ref", "$defs"}) | _ANNOTATIONS
_SCHEMA_VALUED = ("additionalProperties", "propertyNames", "items", "if", "then")
_TYPES = {"object": "an object", "array": "a list", "string": "a string", "integer": "an integer",
          "number": "a number", "boolean": "true or false", "null": "null"}


def _check_keywords(schema: Any, where: str) -> None:
    """Refuse a schema keyword this interpreter does not implement (it would otherwise be ignored)."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise RecordError(f"record schema {where}: expected an object, got {schema!r}")
    unknown = sorted(set(schema) - _KEYWORDS)
    if unknown:
        raise RecordError(f"record schema {where}: keyword {unknown[0]!r} is not implemented by "
                          "sidbench.records", hint="use only the keywords listed in records._KEYWORDS")
    for key in _SCHEMA_VALUED:
        if key in schema:
            _check_keywords(schema[key], f"{where}/{key}")
    for key in ("properties", "$defs"):
        for name, sub in schema.get(key, {}).items():
            _check_keywords(sub, f"{where}/{key}/{name}")
    for key in ("anyOf", "allOf"):
        for i, sub in enumerate(schema.get(key, [])):
            _check_keywords(sub, f"{where}/{key}/{i}")


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}[name] \
        .__instancecheck__(value)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


class _Validator:
    """Draft 2020-12 semantics for the keywords in `_KEYWORDS`; errors as 'field.path: what is wrong'."""

    def __init__(self, root: dict[str, Any]):
        self.root = root

    def errors(self, value: Any) -> list[str]:
        out: list[str] = []
        self._check(self.root, value, (), out)
        return out

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise RecordError(f"record schema: only local references are supported, not {ref!r}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part]
        return node

    def _type_fits(self, schema: Any, value: Any) -> bool:
        """Whether `value` has the JSON type a schema branch asks for (its other keywords aside)."""
        if isinstance(schema, dict) and "$ref" in schema:
            schema = self._resolve(schema["$ref"])
        if not isinstance(schema, dict) or "type" not in schema:
            return False
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return any(_is_type(value, n) for n in names)

    def _valid(self, schema: Any, value: Any, path: tuple[str, ...]) -> bool:
        probe: list[str] = []
        self._check(schema, value, path, probe)
        return not probe

    def _check(self, schema: Any, value: Any, path: tuple[str, ...], out: list[str]) -> None:
        field = ".".join(path) or "record"
        if schema is True:
            return
        if schema is False:
            out.append(f"{field}: not a field of record schema v{RECORD_SCHEMA_VERSION}")
            return
        if "$ref" in schema:
            self._check(self._resolve(schema["$ref"]), value, path, out)
        if "type" in schema:
            names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_is_type(value, n) for n in names):
                want = " or ".join(_TYPES[n] for n in names)
                out.append(f"{field}: expected {want}, got {_short(value)}")
                return
        if "const" in schema and value != schema["const"]:
            out.append(f"{field}: must be {_short(schema['const'])}, not {_short(value)}")
        if "enum" in schema and value not in schema["enum"]:
            from sidbench.registry import suggest

            hint = suggest(str(value), [str(v) for v in schema["enum"]]) if isinstance(value, str) else ""
            out.append(f"{field}: must be one of {', '.join(map(str, schema['enum']))}, not {_short(value)}."
                       f"{hint}".rstrip("."))
        if isinstance(value, str):
            if "minLength" in schema and len(value) < schema["minLength"]:
                out.append(f"{field}: must not be empty" if schema["minLength"] == 1
                           else f"{field}: shorter than {schema['minLength']} characters")
            if "pattern" in schema and not re.search(schema["pattern"], value):
                out.append(f"{field}: {_short(value)} does not match the pattern {schema['pattern']}")
        if _is_type(value, "number") and "minimum" in schema and value < schema["minimum"]:
            out.append(f"{field}: {value} is below the minimum {schema['minimum']}")
        if isinstance(value, dict):
            self._check_object(schema, value, path, out)
        if isinstance(value, list) and "items" in schema:
            head, last = path[:-1], path[-1] if path else "record"
            for i, item in enumerate(value):
                self._check(schema["items"], item, (*head, f"{last}[{i}]"), out)
        if "anyOf" in schema and not any(self._valid(s, value, path) for s in schema["anyOf"]):
            typed = [s for s in schema["anyOf"] if self._type_fits(s, value)]
            if len(typed) == 1:  # one branch is meant (an object where "null or an object" is allowed)
                self._check(typed[0], value, path, out)
            else:
                options = " or ".join(_describe(self, s) for s in schema["anyOf"])
                out.append(f"{field}: expected {options}, got {_short(value)}")
        for sub in schema.get("allOf", []):
            self._check(sub, value, path, out)
        if "if" in schema and self._valid(schema["if"], value, path) and "then" in schema:
            self._check(schema["then"], value, path, out)

    def _check_object(self, schema: dict[str, Any], value: dict[str, Any], path: tuple[str, ...],
                      out: list[str]) -> None:
        field = ".".join(path) or "record"
        missing = [f"{'.'.join((*path, name))}: missing" for name in schema.get("required", [])
                   if name not in value]
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            out.append(f"{field}: needs at least {schema['minProperties']} entr"
                       f"{'y' if schema['minProperties'] == 1 else 'ies'}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if "propertyNames" in schema:
                self._check(schema["propertyNames"], name, (*path, name), out)
            if name in props:
                self._check(props[name], item, (*path, name), out)
            elif extra is False:
                from sidbench.registry import suggest

                out.append(f"{'.'.join((*path, name))}: not a field of record schema "
                           f"v{RECORD_SCHEMA_VERSION}.{suggest(name, list(props))}".rstrip("."))
            else:
                self._check(extra, item, (*path, name), out)
        out.extend(missing)  # after the unknown names: a misspelt field is named with its suggestion first


def _describe(validator: _Validator, schema: Any) -> str:
    """A few words for one branch of anyOf: 'null', 'a number', 'one of nan, inf, -inf', 'an object'."""
    if "$ref" in schema:
        return _describe(validator, validator._resolve(schema["$ref"]))
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    if "anyOf" in schema:
        return " or ".join(_describe(validator, s) for s in schema["anyOf"])
    names = schema.get("type", "object")
    return " or ".join(_TYPES[n] for n in (names if isinstance(names, list) else [names]))

