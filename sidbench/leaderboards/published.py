"""Published numbers with their citations, read from a YAML file, as result records (`source: published`).

The file (the repository's `leaderboards/published.yaml`) names each paper once and lists rows:
suite, label, method, role, NFE, the citation (paper key, table, source tag, where the number was
read, a note) and the metrics (value, protocol name, how well the protocol matches, image count).
Protocol versions and directions come from the registered protocols, so a published row is
checked like a measured one. Every key is checked: a misspelt one is an error naming it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sidbench.errors import ConfigError
from sidbench.records import SOURCE_TAGS, result_record

_ROW_KEYS = {"suite", "label", "method", "role", "nfe", "teacher_nfe", "cite", "metrics", "notes"}
_CITE_KEYS = {"paper", "table", "source_tag", "where", "note"}
_METRIC_KEYS = {"value", "protocol", "protocol_match", "num_images", "note"}
_PAPER_KEYS = {"paper", "arxiv"}


def _check_keys(obj: Any, allowed: set[str], where: str, required: frozenset[str] | set[str] = frozenset()
                ) -> None:
    from sidbench.registry import suggest

    if not isinstance(obj, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {obj!r}")
    for key in obj:
        if key not in allowed:
            message = f"{where}: unknown key '{key}'.{suggest(str(key), sorted(allowed))}".rstrip(".")
            raise ConfigError(message, hint=f"keys: {', '.join(sorted(allowed))}")
    for key in sorted(required - set(obj)):
        raise ConfigError(f"{where}: '{key}' is missing")


def _metric(key: str, spec: Mapping[str, Any], where: str) -> dict[str, Any]:
    from sidbench.metrics.protocols import get_protocol

    _check_keys(spec, _METRIC_KEYS, where, required={"value", "protocol", "protocol_match"})
    p = get_protocol(str(spec["protocol"]))
    entry = {"value": spec["value"], "protocol": {"name": p.name, "version": p.version},
             "lower_is_better": p.lower_is_better, "num_images": spec.get("num_images"),
             "protocol_match": spec["protocol_match"]}
    if spec.get("note"):
        entry["note"] = spec["note"]
    return entry


def published_records(path: str | os.PathLike, *, created: str | None = None) -> list[dict[str, Any]]:
    """Every row of the published-numbers file as a validated record, in file order."""
    import yaml

    from sidbench.registry import SUITES

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p} does not exist", hint="give the published-numbers YAML file") from None
    _check_keys(data, {"papers", "rows"}, str(p), required={"papers", "rows"})
    papers = data["papers"]
    for key, paper in papers.items():
        _check_keys(paper, _PAPER_KEYS, f"{p}: papers.{key}", required=_PAPER_KEYS)
    records = []
    for i, row in enumerate(data["rows"]):
        where = f"{p}: rows[{i}]"
        _check_keys(row, _ROW_KEYS, where,
                    required={"suite", "label", "method", "role", "nfe", "cite", "metrics"})
        cite = row["cite"]
        _check_keys(cite, _CITE_KEYS, f"{where}.cite", required={"paper", "table", "source_tag"})
        if cite["paper"] not in papers:
            raise ConfigError(f"{where}.cite.paper: '{cite['paper']}' is not under papers",
                              hint=f"papers: {', '.join(papers)}")
        if cite["source_tag"] not in SOURCE_TAGS:
            raise ConfigError(f"{where}.cite.source_tag: '{cite['source_tag']}' is not one of "
                              f"{', '.join(SOURCE_TAGS)}")
        citation = {**papers[cite["paper"]], "table": cite["table"], "source_tag": cite["source_tag"],
                    **{k: cite[k] for k in ("where", "note") if cite.get(k)}}
        suite = str(row["suite"])
        version = SUITES.get(suite).version if suite in SUITES.names() else None
        method = {"name": row["method"], "version": None, "label": row["label"], "role": row["role"],
                  "nfe": row["nfe"]}
        if row.get("teacher_nfe") is not None:
            method["teacher_nfe"] = row["teacher_nfe"]
        metrics = {k: _metric(k, spec, f"{where}.metrics.{k}") for k, spec in row["metrics"].items()}
        records.append(result_record(suite={"name": suite, "version": version}, method=method,
                                     metrics=metrics, source="published", citation=citation, networks={},
                                     environment=None, cost=None, created=created,
                                     extra={"notes": row["notes"]} if row.get("notes") else None))
    return records


def by_suite(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by suite name, in first-seen order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        out.setdefault(rec["suite"]["name"], []).append(rec)
    return out
