"""The leaderboard folder of a suite: its released versions, adding records as the next one, showing one.

`add_records` decides the next version from what the records change: MINOR when they add rows,
PATCH (`bump="patch"`) when every one replaces a row of the same name (a fix), MAJOR
(`bump="major"`) only when a protocol's (or the suite's) major version differs from the table's,
which is refused otherwise: numbers under two majors of a protocol are not comparable, so no
table mixes them. A MAJOR table holds the new records and the previous rows that are still
comparable. Versions are written to a hidden stage and renamed into place, so a version folder is
complete or absent, and two writers cannot both make the same version.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidbench.errors import ConfigError
from sidbench.fileio import atomic_write_text, sha256_bytes
from sidbench.jsonsafe import dumps
from sidbench.leaderboards import manifest as mf
from sidbench.leaderboards.table import build_table, row_id, to_csv, to_markdown
from sidbench.leaderboards.versions import BUMPS, FIRST, Version, major_of
from sidbench.records import read_record, validate_record

CHANGELOG = "CHANGELOG.md"
RECORDS = "records"
TABLE_CSV = "table.csv"
TABLE_MD = "table.md"
_WHY = {"major": "a protocol or the suite changed major version: numbers are not comparable with earlier "
                 "tables", "minor": "rows added", "patch": "rows fixed", "first": "first release"}


@dataclass
class Rows:
    """A table's rows: row id -> record (as stored) and the bytes of its record file."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # row id -> where the record came from

    def take(self, other: Rows, rid: str) -> None:
        """Copy row `rid` of `other` (record, bytes and origin) into these rows."""
        self.records[rid] = other.records[rid]
        self.raw[rid], self.origin[rid] = other.raw[rid], other.origin[rid]

    def merged(self, other: Rows) -> Rows:
        """These rows with `other`'s added, `other` winning where both have a row."""
        out = Rows(dict(self.records), dict(self.raw), dict(self.origin))
        for rid in other.records:
            out.take(other, rid)
        return out


def suite_folder(root: str | os.PathLike, suite: str) -> Path:
    return Path(root) / suite


def versions(root: str | os.PathLike, suite: str) -> list[Version]:
    """The released versions of `suite`, oldest first (folders named vX.Y.Z)."""
    folder = suite_folder(root, suite)
    if not folder.is_dir():
        return []
    return sorted(Version.parse(p.name) for p in folder.iterdir()
                  if p.is_dir() and Version.is_version(p.name))


def suites(root: str | os.PathLike) -> list[str]:
    """The suites that have a leaderboard under `root`."""
    r = Path(root)
    return sorted(p.name for p in r.iterdir() if p.is_dir() and versions(r, p.name)) if r.is_dir() else []


def _no_leaderboard(root: str | os.PathLike, suite: str) -> ConfigError:
    from sidbench.registry import suggest

    known = suites(root)
    hint = f"leaderboards there: {', '.join(known)}" if known else \
        "make one with `sidbench leaderboard add RECORD... --suite NAME`"
    return ConfigError(f"no leaderboard for suite '{suite}' in {root}.{suggest(suite, known)}".rstrip("."),
                       hint=hint)


def verify_all(root: str | os.PathLike, suite: str) -> list[Version]:
    """Check every released version of `suite` against its manifest, and each manifest against the hash
    its successor chained to (so a rewritten manifest is caught too). Returns the versions."""
    known = versions(root, suite)
    folder = suite_folder(root, suite)
    for older, newer in zip([None, *known], known, strict=False):
        manifest = mf.verify(folder / str(newer))
        previous = manifest.get("previous")
        if older is None:
            continue
        actual = mf.manifest_sha256(folder / str(older))
        if not previous or previous.get("version") != str(older) or previous.get("manifest_sha256") != actual:
            raise mf.AlteredVersionError(
                f"{folder / str(older)} was altered: its {mf.MANIFEST} is not the one {newer} was built on",
                hint="released versions are never edited: restore it (e.g. `git checkout`)")
    return known


def load_version(root: str | os.PathLike, suite: str, version: Version) -> tuple[dict[str, Any], Rows]:
    """A released version's manifest and rows, after verifying every file against the manifest."""
    folder = suite_folder(root, suite) / str(version)
    if not folder.is_dir():
        known = ", ".join(str(v) for v in versions(root, suite)) or "none"
        raise ConfigError(f"suite '{suite}' has no leaderboard version {version} in {root}",
                          hint=f"released versions: {known}")
    manifest = mf.verify(folder)
    rows = Rows()
    for rid in manifest["rows"]:
        path = folder / RECORDS / f"{rid}.json"
        rows.records[rid] = read_record(path)
        rows.raw[rid] = path.read_bytes()
        rows.origin[rid] = str(path)
    return manifest, rows


def _compat(records: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[int, str]]:
    """'protocol NAME' / 'suite NAME' -> major -> the first row that uses it."""
    out: dict[str, dict[int, str]] = {}
    for rid, rec in records.items():
        if rec["suite"].get("version"):
            suite = out.setdefault(f"suite {rec['suite']['name']}", {})
            suite.setdefault(major_of(rec["suite"]["version"]), rid)
        for entry in rec["metrics"].values():
            p = entry["protocol"]
            out.setdefault(f"protocol {p['name']}", {}).setdefault(major_of(p["version"]), rid)
    return out


def _majors(compat: Mapping[str, Mapping[int, str]]) -> dict[str, int]:
    return {k: next(iter(v)) for k, v in compat.items()}


def _check_one_major(compat: Mapping[str, Mapping[int, str]], where: Mapping[str, str]) -> None:
    for key, by_major in compat.items():
        if len(by_major) > 1:
            (m1, r1), (m2, r2) = sorted(by_major.items())[:2]
            raise ConfigError(f"{where.get(r1, r1)} and {where.get(r2, r2)} use {key} at majors {m1} and "
                              f"{m2}: one table holds one major of each protocol",
                              hint="numbers under different protocol majors are not comparable; add them to "
                                   "separate MAJOR versions")


def _check_protocol_facts(rid: str, rec: Mapping[str, Any], where: str) -> None:
    """A metric's direction must be its registered protocol's (when the protocol is known here)."""
    from sidbench.metrics.protocols import PROTOCOLS

    for key, entry in rec["metrics"].items():
        p = PROTOCOLS.get(entry["protocol"]["name"])
        if p is not None and major_of(p.version) == major_of(entry["protocol"]["version"]) \
                and bool(entry["lower_is_better"]) != p.lower_is_better:
            better = "lower" if p.lower_is_better else "higher"
            raise ConfigError(f"{where}: metrics.{key}.lower_is_better is {entry['lower_is_better']}, but "
                              f"protocol {p.name} says {better} is better",
                              hint="fix the record")


def headline_metric(suite: str, records: Mapping[str, Mapping[str, Any]]) -> str:
    """The metric a table is sorted by: the suite's first protocol's metric (FID), else fid, else any."""
    from sidbench.registry import SUITES

    present = {k for rec in records.values() for k in rec["metrics"]}
    candidates: list[str] = []
    if suite in SUITES.names():
        from sidbench.metrics.catalog import get_metric
        from sidbench.metrics.protocols import get_protocol

        for name in SUITES.get(suite).protocols:
            candidates += list(get_metric(get_protocol(name).metric).keys())
    candidates.append("fid")
    return next((k for k in candidates if k in present), min(present) if present else "fid")


def _incoming(items: Sequence[Any], suite: str) -> Rows:
    """Records given as files (or dicts), validated, checked against the suite, keyed by row id."""
    from sidbench.registry import SUITES, suggest

    if not items:
        raise ConfigError("no records given", hint="give one or more record .json files")
    rows = Rows()
    registered = suite in SUITES.names()
    for item in items:
        if isinstance(item, Mapping):
            rec, where = dict(item), f"record {row_id(item) if 'method' in item else '?'}"
            validate_record(rec, where=where)
            raw = (dumps(rec) + "\n").encode("utf-8")
        else:
            rec, where = read_record(item), str(item)
            raw = Path(item).read_bytes()
        if rec["suite"]["name"] != suite:
            raise ConfigError(f"{where} is a record of suite '{rec['suite']['name']}', not '{suite}'",
                              hint="add it to its own suite's leaderboard (--suite)")
        if not registered and rec["source"] == "measured":
            near = suggest(suite, SUITES.names())
            message = f"suite '{suite}' is not registered, and {where} is measured.{near}".rstrip(".")
            raise ConfigError(message, hint="measured records come from a registered suite (`sidbench ls "
                                            "suites`); only published numbers may name another")
        rid = row_id(rec)
        if rid in rows.records:
            raise ConfigError(f"{where} and {rows.origin[rid]} are both row '{rid}'",
                              hint="one row per label (and kimg): give each record its own method.label")
        _check_protocol_facts(rid, rec, where)
        rows.records[rid], rows.raw[rid], rows.origin[rid] = rec, raw, where
    _check_one_major(_compat(rows.records), rows.origin)
    return rows


def _plan(latest: Version | None, old: Rows, old_manifest: dict[str, Any] | None, new: Rows,
          bump: str | None) -> tuple[Version, str, Rows, dict[str, list[str]]]:
    """The next version, why, its rows, and what changed (added / replaced / dropped row ids)."""
    if bump is not None and bump not in BUMPS:
        raise ConfigError(f"--bump: invalid choice '{bump}'", hint=f"choose from {', '.join(BUMPS)}")
    if latest is None:
        if bump == "patch":
            raise ConfigError("--bump patch fixes rows of a released version, and this suite has none",
                              hint="drop --bump: the first version is v1.0.0")
        return FIRST, "first", new, {"added": list(new.records), "replaced": [], "dropped": []}
    assert old_manifest is not None
    table = old_manifest.get("majors", {})
    incoming = _majors(_compat(new.records))
    changed = {k: (table[k], m) for k, m in incoming.items() if k in table and table[k] != m}
    if changed and bump != "major":
        key, (was, now) = next(iter(sorted(changed.items())))
        rid = _compat(new.records)[key][now]
        raise ConfigError(f"{new.origin[rid]} uses {key} at major {now}, {latest} holds major {was}: the "
                          "numbers are not comparable",
                          hint="a protocol change needs a new MAJOR version: --bump major")
    if bump == "major":
        if not changed:
            raise ConfigError("--bump major is for a protocol (or suite) major change, and these records "
                              f"use {latest}'s",
                              hint="add rows as MINOR (the default) or fix rows with --bump patch")
        rows, dropped = Rows(), []
        for rid, rec in old.records.items():
            keep = all(incoming.get(k, m) == m for k, m in _majors(_compat({rid: rec})).items())
            if keep:
                rows.take(old, rid)
            else:
                dropped.append(rid)
        rows = rows.merged(new)
        added = [r for r in new.records if r not in old.records]
        replaced = [r for r in new.records if r in old.records]
        return latest.bump("major"), "major", rows, {"added": added, "replaced": replaced, "dropped": dropped}
    if bump == "patch":
        missing = [rid for rid in new.records if rid not in old.records]
        if missing:
            raise ConfigError(f"{new.origin[missing[0]]} is row '{missing[0]}', which {latest} does not "
                              "have: a PATCH only replaces rows", hint="add new rows as MINOR (drop --bump)")
        same = [rid for rid in new.records if new.raw[rid] == old.raw[rid]]
        if same:
            raise ConfigError(f"{new.origin[same[0]]} is the record {latest} already holds for row "
                              f"'{same[0]}'", hint="a fix is a new record with the corrected content")
        rows = old.merged(new)
        change = {"added": [], "replaced": list(new.records), "dropped": []}
        return latest.bump("patch"), "patch", rows, change
    clash = [rid for rid in new.records if rid in old.records]
    if clash:
        raise ConfigError(f"{new.origin[clash[0]]} is row '{clash[0]}', which {latest} already has",
                          hint="to replace a row with a fixed record use --bump patch; a new row needs its "
                               "own method.label")
    rows = old.merged(new)
    return latest.bump("minor"), "minor", rows, {"added": list(new.records), "replaced": [], "dropped": []}


def add_records(root: str | os.PathLike, suite: str, items: Sequence[Any], *, bump: str | None = None,
                note: str | None = None, created: str | None = None) -> dict[str, Any]:
    """Release the next version of `suite`'s leaderboard under `root` with the records `items` (files or
    dicts). Returns what was made: version, previous, bump, path, added / replaced / dropped rows."""
    new = _incoming(items, suite)
    known = verify_all(root, suite)
    latest = known[-1] if known else None
    old_manifest, old = (load_version(root, suite, latest) if latest is not None else (None, Rows()))
    version, why, rows, change = _plan(latest, old, old_manifest, new, bump)
    headline = headline_metric(suite, rows.records)
    df, columns = build_table(rows.records, headline)
    folder = suite_folder(root, suite)
    final = folder / str(version)
    if final.exists():
        raise ConfigError(f"{final} exists but is not the newest version", hint="remove the stray folder")
    folder.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".stage", dir=folder))
    try:
        (stage / RECORDS).mkdir()
        for rid in df["row"]:
            (stage / RECORDS / f"{rid}.json").write_bytes(rows.raw[rid])
        (stage / TABLE_CSV).write_text(to_csv(df), encoding="utf-8")
        (stage / TABLE_MD).write_text(to_markdown(df, columns, suite=suite, version=str(version),
                                                  headline=headline), encoding="utf-8")
        majors = _majors(_compat(rows.records))
        manifest = {
            "format": mf.FORMAT, "format_version": mf.FORMAT_VERSION, "suite": suite, "version": str(version),
            "created": created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "bump": why, "why": _WHY[why], "note": note,
            "previous": None if latest is None else {
                "version": str(latest), "manifest_sha256": mf.manifest_sha256(folder / str(latest))},
            "headline": {"metric": headline,
                         "lower_is_better": next(c.lower_is_better for c in columns if c.key == headline)
                         if any(c.key == headline for c in columns) else None},
            "majors": majors,
            "rows": list(df["row"]), **change,
            "files": mf.file_hashes(stage),
        }
        (stage / mf.MANIFEST).write_text(dumps(manifest) + "\n", encoding="utf-8")
        try:
            os.rename(stage, final)  # atomic; fails if another writer made this version meanwhile
        except OSError:
            raise ConfigError(f"{final} appeared while this version was being written",
                              hint="another `leaderboard add` ran at the same time; run this one again"
                              ) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    write_changelog(root, suite)
    return {"suite": suite, "version": str(version), "previous": str(latest) if latest else None, "bump": why,
            "path": str(final), "headline": headline, "rows": len(df), **change}


def write_changelog(root: str | os.PathLike, suite: str) -> Path:
    """CHANGELOG.md of a suite, regenerated from its versions' manifests (newest first)."""
    folder = suite_folder(root, suite)
    lines = [f"# {suite} leaderboard: changelog", "",
             "Generated by `sidbench leaderboard add` from each version's manifest.json. MAJOR: a protocol "
             "(or the suite) changed major version, numbers are not comparable with earlier tables; MINOR: "
             "rows added; PATCH: rows fixed. Released versions are never edited; each manifest lists the "
             "sha256 of its files and of the previous manifest.", ""]
    for v in reversed(versions(root, suite)):
        m = mf.read_manifest(folder / str(v))
        lines.append(f"## {v} ({m['created'][:10]}): {m['why']}")
        lines.append("")
        for what in ("added", "replaced", "dropped"):
            if m.get(what):
                lines.append(f"- {what}: {', '.join(m[what])}")
        if m.get("note"):
            lines.append(f"- note: {m['note']}")
        lines.append(f"- sorted by {m['headline']['metric']}; {len(m['rows'])} rows")
        lines.append(f"- manifest sha256: {mf.manifest_sha256(folder / str(v))}")
        lines.append("")
    text = "\n".join(lines)
    path = folder / CHANGELOG
    atomic_write_text(path, text)
    return path


def show_version(root: str | os.PathLike, suite: str, version: str | None = None) -> dict[str, Any]:
    """A released version (default: the newest) as rows sorted by its headline metric, after verifying it."""
    known = verify_all(root, suite)
    if not known:
        raise _no_leaderboard(root, suite)
    v = Version.parse(version) if version is not None else known[-1]
    manifest, rows = load_version(root, suite, v)
    headline = manifest["headline"]["metric"]
    df, columns = build_table(rows.records, headline)
    return {"suite": suite, "version": str(v), "path": str(suite_folder(root, suite) / str(v)),
            "headline": headline, "why": manifest["why"], "created": manifest["created"],
            "manifest_sha256": sha256_bytes((suite_folder(root, suite) / str(v) / mf.MANIFEST).read_bytes()),
            "metrics": [{"key": c.key, "label": c.label, "lower_is_better": c.lower_is_better}
                        for c in columns],
            "rows": df.astype(object).where(df.notna(), None).to_dict(orient="records"),
            "versions": [str(x) for x in known]}
