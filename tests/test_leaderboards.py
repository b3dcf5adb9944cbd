"""Versioned leaderboards: next versions, protocol majors, immutability, sorting, and the released tables.

The last part checks the repository's own leaderboards/: every released version's files against its
manifest (so a released version cannot be altered unnoticed), the manifest chain, the tables against
their records, and the published numbers against the values issue 16 and methods.md list.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import pytest

from sidbench.cli import main
from sidbench.errors import AssetError, ConfigError
from sidbench.fileio import sha256_file
from sidbench.leaderboards import manifest as mf
from sidbench.leaderboards.published import published_records
from sidbench.leaderboards.store import add_records, load_version, show_version, versions
from sidbench.leaderboards.table import row_id
from sidbench.leaderboards.versions import Version
from sidbench.records import read_record, result_record, validate_record, write_record

REPO = Path(__file__).resolve().parents[1]
LEADERBOARDS = REPO / "leaderboards"
SHA = "d" * 64
FEW = "40 images, the protocol uses 2000"


def _entry(value, protocol="digits-fd", version="1.0.0", lower_is_better=True, full=True):
    return {"value": value, "protocol": {"name": protocol, "version": version}, "num_images": 2000,
            "full_protocol": full, "protocol_deviations": [] if full else [FEW],
            "extractor_sha256": SHA, "reference_sha256": SHA, "lower_is_better": lower_is_better}


def record(label, fid=None, *, version="1.0.0", suite="digits", is_=None, kimg=None, role="generator"):
    metrics = {}
    if fid is not None:
        metrics["fid"] = _entry(fid, version=version)
    if is_ is not None:
        metrics["is"] = _entry(is_, protocol="digits-is", lower_is_better=False)
    return result_record(suite={"name": suite, "version": "1.0.0"},
                         method={"name": "sid", "version": "1.0.0", "label": label, "role": role, "nfe": 1},
                         metrics=metrics, networks={"teacher_sha256": SHA},
                         environment={"torch": "2.4", "device": "cpu", "processes": 1},
                         cost={"wall_seconds": 1.0}, seeds="0-1999", extra={"kimg": kimg})


def files(tmp_path, *records, folder="in"):
    out = tmp_path / folder
    out.mkdir(exist_ok=True)
    return [write_record(out / f"{row_id(r)}.json", r) for r in records]


def _tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def root(tmp_path):
    return tmp_path / "leaderboards"


# --- versions --------------------------------------------------------------------------------------

def test_versions_parse_order_and_bump():
    assert Version.parse("v1.2.3") == Version(1, 2, 3) == Version.parse("1.2.3")
    assert Version(1, 10, 0) > Version(1, 9, 9) and str(Version(2, 0, 1)) == "v2.0.1"
    bumped = [str(Version(1, 2, 3).bump(k)) for k in ("major", "minor", "patch")]
    assert bumped == ["v2.0.0", "v1.3.0", "v1.2.4"]
    with pytest.raises(ConfigError, match="not vMAJOR.MINOR.PATCH"):
        Version.parse("v1.2")


# --- adding ----------------------------------------------------------------------------------------

def test_first_add_releases_v1_with_records_tables_manifest_and_changelog(tmp_path, root):
    result = add_records(root, "digits", files(tmp_path, record("a", 3.0), record("b", 1.0)))
    assert (result["version"], result["bump"], result["previous"]) == ("v1.0.0", "first", None)
    folder = root / "digits" / "v1.0.0"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == \
        ["manifest.json", "records/a.json", "records/b.json", "table.csv", "table.md"]
    manifest = mf.verify(folder)
    assert manifest["rows"] == ["b", "a"]
    assert manifest["headline"] == {"metric": "fid", "lower_is_better": True}
    assert manifest["majors"] == {"protocol digits-fd": 1, "suite digits": 1}
    changelog = (root / "digits" / "CHANGELOG.md").read_text()
    assert "## v1.0.0" in changelog and mf.manifest_sha256(folder) in changelog
    assert not [p for p in (root / "digits").iterdir() if p.name.startswith(".")]  # no stage left behind


def test_adding_rows_makes_the_next_minor_and_leaves_the_released_version_untouched(tmp_path, root):
    add_records(root, "digits", files(tmp_path, record("a", 3.0)))
    before = _tree(root / "digits" / "v1.0.0")
    result = add_records(root, "digits", files(tmp_path, record("b", 2.0), folder="in2"))
    assert (result["version"], result["bump"], result["added"]) == ("v1.1.0", "minor", ["b"])
    assert _tree(root / "digits" / "v1.0.0") == before
    _, rows = load_version(root, "digits", Version(1, 1, 0))
    assert sorted(rows.records) == ["a", "b"]
    assert (root / "digits" / "v1.1.0" / "records" / "a.json").read_bytes() == \
        (root / "digits" / "v1.0.0" / "records" / "a.json").read_bytes()  # carried forward byte for byte
    previous = mf.read_manifest(root / "digits" / "v1.1.0")["previous"]
    first = mf.manifest_sha256(root / "digits" / "v1.0.0")
    assert previous == {"version": "v1.0.0", "manifest_sha256": first}


def test_a_row_that_exists_is_refused_as_minor_and_replaced_as_patch(tmp_path, root):
    add_records(root, "digits", files(tmp_path, record("a", 3.0), record("b", 2.0)))
    fixed = files(tmp_path, record("a", 2.5), folder="fix")
    with pytest.raises(ConfigError, match="row 'a', which v1.0.0 already has.*--bump patch"):
        add_records(root, "digits", fixed)
    result = add_records(root, "digits", fixed, bump="patch")
    assert (result["version"], result["replaced"], result["added"]) == ("v1.0.1", ["a"], [])
    _, rows = load_version(root, "digits", Version(1, 0, 1))
    assert rows.records["a"]["metrics"]["fid"]["value"] == 2.5 and "b" in rows.records
    with pytest.raises(ConfigError, match="PATCH only replaces rows"):
        add_records(root, "digits", files(tmp_path, record("c", 1.0), folder="new"), bump="patch")
    with pytest.raises(ConfigError, match="already holds for row 'a'"):
        add_records(root, "digits", fixed, bump="patch")


def test_a_protocol_major_change_needs_a_major_and_starts_a_comparable_table(tmp_path, root):
    add_records(root, "digits", files(tmp_path, record("a", 3.0), record("is-only", is_=9.0)))
    v2 = files(tmp_path, record("c", 5.0, version="2.0.0"), folder="v2")
    with pytest.raises(ConfigError, match=r"digits-fd at major 2, v1.0.0 holds major 1.*--bump major"):
        add_records(root, "digits", v2)
    with pytest.raises(ConfigError, match="--bump major is for a protocol"):
        add_records(root, "digits", files(tmp_path, record("d", 1.0), folder="same"), bump="major")
    result = add_records(root, "digits", v2, bump="major")
    assert (result["version"], result["added"], result["dropped"]) == ("v2.0.0", ["c"], ["a"])
    _, rows = load_version(root, "digits", Version(2, 0, 0))
    assert sorted(rows.records) == ["c", "is-only"]  # the IS row is still comparable, FID@1 rows are not
    assert mf.read_manifest(root / "digits" / "v2.0.0")["majors"]["protocol digits-fd"] == 2


def test_one_table_never_mixes_protocol_majors(tmp_path, root):
    mixed = files(tmp_path, record("a", 3.0), record("b", 2.0, version="2.0.0"))
    with pytest.raises(ConfigError, match=r"a.json and .*b.json use protocol digits-fd at majors 1 and 2"):
        add_records(root, "digits", mixed)
    with pytest.raises(ConfigError, match="at majors 1 and 2"):
        add_records(root, "digits", mixed, bump="major")
    assert versions(root, "digits") == []


def test_records_must_be_of_the_suite_and_measured_ones_of_a_registered_suite(tmp_path, root):
    with pytest.raises(ConfigError, match="is a record of suite 'digits', not 'toy2d'"):
        add_records(root, "toy2d", files(tmp_path, record("a", 3.0)))
    with pytest.raises(ConfigError, match="suite 'digitz' is not registered.*Did you mean 'digits'"):
        add_records(root, "digitz", files(tmp_path, record("a", 3.0, suite="digitz"), folder="z"))
    with pytest.raises(ConfigError, match="both row 'a'"):
        add_records(root, "digits", files(tmp_path, record("a", 3.0), folder="x") +
                    files(tmp_path, record("a", 2.0), folder="y"))


def test_a_direction_that_contradicts_the_protocol_is_refused(tmp_path, root):
    bad = record("a", 3.0)
    bad["metrics"]["fid"]["lower_is_better"] = False
    with pytest.raises(ConfigError, match="lower_is_better is False, but protocol digits-fd says lower"):
        add_records(root, "digits", [bad])


# --- released versions cannot be altered -----------------------------------------------------------

@pytest.mark.parametrize("change", ["edit", "add", "remove", "manifest"])
def test_an_altered_released_version_is_refused_by_show_and_add(tmp_path, root, change):
    add_records(root, "digits", files(tmp_path, record("a", 3.0), record("b", 2.0)))
    folder = root / "digits" / "v1.0.0"
    if change == "edit":
        (folder / "table.csv").write_text((folder / "table.csv").read_text().replace("2.0", "1.0"))
        expected = "table.csv differs from its manifest"
    elif change == "add":
        (folder / "records" / "c.json").write_text("{}")
        expected = "records/c.json is not in its manifest"
    elif change == "remove":
        (folder / "records" / "a.json").unlink()
        expected = "records/a.json is missing"
    else:  # a rewritten manifest: no longer the one the next version chained to
        add_records(root, "digits", files(tmp_path, record("c", 1.0), folder="more"))
        m = json.loads((folder / mf.MANIFEST).read_text())
        m["note"] = "rewritten"
        (folder / mf.MANIFEST).write_text(json.dumps(m))
        expected = "its manifest.json is not the one v1.1.0 was built on"
    with pytest.raises(AssetError, match=f"v1.0.0 was altered: {expected}"):
        show_version(root, "digits")
    with pytest.raises(AssetError, match="was altered"):
        add_records(root, "digits", files(tmp_path, record("z", 1.0), folder="z"))


# --- show: sorted by the headline metric in its direction ----------------------------------------

def test_show_sorts_by_fid_ascending_and_puts_rows_without_it_last(tmp_path, root):
    add_records(root, "digits", files(tmp_path, record("mid", 2.0, is_=8.0), record("worst", 3.0, is_=9.5),
                                      record("best", 1.0, is_=7.0), record("no-fid", is_=9.9)))
    shown = show_version(root, "digits")
    assert [r["row"] for r in shown["rows"]] == ["best", "mid", "worst", "no-fid"]
    assert [r["rank"] for r in shown["rows"]] == [1, 2, 3, None]
    assert {m["key"]: m["lower_is_better"] for m in shown["metrics"]} == {"fid": True, "is": False}
    md = (root / "digits" / "v1.0.0" / "table.md").read_text()
    assert "FID \u2193" in md and "IS \u2191" in md
    assert "**1**" in md and "**9.9**" in md  # the best of each column, in its own direction


def test_a_higher_is_better_headline_sorts_descending(tmp_path, root):
    recs = [record(name, is_=v, suite="is-only") for name, v in (("low", 2.0), ("high", 9.0), ("mid", 5.0))]
    for rec in recs:  # published numbers may name a suite that is not registered
        rec.update(source="published", environment=None, cost=None,
                   citation={"paper": "P", "arxiv": None, "table": None, "source_tag": "secondary"})
        validate_record(rec)
    add_records(root, "is-only", recs)
    shown = show_version(root, "is-only")
    assert shown["headline"] == "is" and [r["row"] for r in shown["rows"]] == ["high", "mid", "low"]


def test_off_protocol_numbers_are_marked(tmp_path, root):
    rec = record("few", 3.0)
    rec["metrics"]["fid"].update(full_protocol=False, protocol_deviations=[FEW])
    add_records(root, "digits", [rec])
    assert show_version(root, "digits")["rows"][0]["off_protocol"] == "fid"
    assert "**3**\u2020" in (root / "digits" / "v1.0.0" / "table.md").read_text()


def test_cli_add_and_show(tmp_path, root, capsys):
    paths = files(tmp_path, record("b-row", 2.0), record("a-row", 1.0, kimg=3.2))
    assert main(["leaderboard", "add", *map(str, paths), "--suite", "digits", "--root", str(root),
                 "--note", "first rows"]) == 0
    assert "digits leaderboard v1.0.0" in capsys.readouterr().out
    assert main(["leaderboard", "show", "digits", "--root", str(root), "--version", "v1.0.0"]) == 0
    out = capsys.readouterr().out
    assert "FID \u2193" in out and out.index("a-row") < out.index("b-row") and "3.2" in out
    rc = main(["leaderboard", "show", "digitz", "--root", str(root)])
    err = capsys.readouterr().err
    assert rc == 1 and "no leaderboard for suite 'digitz'" in err and "Did you mean 'digits'" in err
    rc = main(["leaderboard", "show", "digits", "--root", str(root), "--version", "v9.0.0"])
    assert rc == 1 and "released versions: v1.0.0" in capsys.readouterr().err
    assert "first rows" in (root / "digits" / "CHANGELOG.md").read_text()


# --- the repository's released leaderboards --------------------------------------------------------

def _released():
    return [(suite.name, v) for suite in sorted(LEADERBOARDS.iterdir()) if suite.is_dir()
            for v in versions(LEADERBOARDS, suite.name)]


def test_every_published_suite_has_a_released_leaderboard():
    from sidbench.registry import SUITES

    with_tables = {s for s, _ in _released()}
    assert {n for n in SUITES.names() if n not in ("digits", "toy2d", "digits-t2i")} <= with_tables
    assert "coco2014-sd21base" in with_tables


@pytest.mark.parametrize("suite, version", _released(), ids=lambda x: str(x))
def test_a_released_version_matches_its_manifest_and_its_records(suite, version):
    folder = LEADERBOARDS / suite / str(version)
    manifest = mf.verify(folder)  # recomputes every file's sha256: any change to a released file fails here
    assert manifest["suite"] == suite and manifest["version"] == str(version)
    older = [v for v in versions(LEADERBOARDS, suite) if v < version]
    if older:
        chained = mf.manifest_sha256(LEADERBOARDS / suite / str(older[-1]))
        assert manifest["previous"] == {"version": str(older[-1]), "manifest_sha256": chained}
    else:
        assert manifest["previous"] is None
    assert mf.manifest_sha256(folder) in (LEADERBOARDS / suite / "CHANGELOG.md").read_text()
    records = {rid: read_record(folder / "records" / f"{rid}.json") for rid in manifest["rows"]}
    majors: dict[str, set[int]] = {}
    for rid, rec in records.items():
        assert row_id(rec) == rid and rec["suite"]["name"] == suite
        for entry in rec["metrics"].values():
            name, version_ = entry["protocol"]["name"], entry["protocol"]["version"]
            majors.setdefault(name, set()).add(int(version_.split(".")[0]))
        if rec["source"] == "published":
            assert rec["citation"]["paper"]
            assert rec["citation"]["source_tag"] in ("code", "paper", "secondary")
    assert all(len(m) == 1 for m in majors.values()), majors
    rows = list(csv.DictReader(io.StringIO((folder / "table.csv").read_text())))
    assert [r["row"] for r in rows] == manifest["rows"]
    head = manifest["headline"]
    values = [float(r[head["metric"]]) for r in rows if r[head["metric"]]]
    assert values == sorted(values, reverse=not head["lower_is_better"])
    for r in rows:
        for key, entry in records[r["row"]]["metrics"].items():
            shown = float(r[key])
            assert shown == float(entry["value"]) or (math.isnan(shown) and entry["value"] == "nan")


def _content(rec):
    return {k: v for k, v in json.loads(json.dumps(rec)).items() if k not in ("created", "sidbench")}


def test_every_published_row_is_released_in_its_suites_newest_version():
    for rec in published_records(LEADERBOARDS / "published.yaml"):
        suite = rec["suite"]["name"]
        _, rows = load_version(LEADERBOARDS, suite, versions(LEADERBOARDS, suite)[-1])
        assert _content(rows.records[row_id(rec)]) == _content(rec), (suite, row_id(rec))


# The numbers issue 16 and shared/spec/methods.md list, written out here as the oracle of the YAML.
SPEC = {
    ("cifar10-uncond", "EDM teacher (Heun 18 steps)"): (1.97, 35, None),
    ("cifar10-uncond", "SiD"): (1.923, 1, 35),
    ("cifar10-uncond", "SiDA"): (1.499, 1, 35), ("cifar10-uncond", "Diff-Instruct"): (4.53, 1, 35),
    ("cifar10-cond", "EDM teacher (Heun 18 steps)"): (1.79, 35, None),
    ("cifar10-cond", "SiD"): (1.710, 1, 35),
    ("cifar10-cond", "SiDA"): (1.396, 1, 35),
    ("imagenet64-cond", "EDM teacher (Heun 40 steps)"): (2.44, 79, None),
    ("imagenet64-cond", "EDM teacher (Heun 256 steps)"): (2.32, 511, None),
    ("imagenet64-cond", "EDM teacher (stochastic, 256 steps)"): (1.36, 511, None),
    ("imagenet64-cond", "SiD"): (1.524, 1, 79), ("imagenet64-cond", "SiDA"): (1.110, 1, 79),
    ("imagenet64-cond", "DMD"): (2.62, 1, 79), ("imagenet64-cond", "DMD2"): (1.51, 1, 79),
    ("imagenet64-cond", "DMD2 (no GAN)"): (2.61, 1, 79),
    ("imagenet64-cond", "DMD2 (no-GAN run resumed with GAN)"): (1.28, 1, 79),
    ("imagenet64-cond", "Diff-Instruct"): (5.57, 1, 79),
    ("ffhq64", "EDM teacher (Heun 40 steps)"): (2.39, 79, None), ("ffhq64", "SiD"): (1.550, 1, 79),
    ("ffhq64", "SiDA"): (1.040, 1, 79),
    ("afhqv2-64", "EDM teacher (Heun 40 steps)"): (1.96, 79, None), ("afhqv2-64", "SiD"): (1.628, 1, 79),
    ("afhqv2-64", "SiDA"): (1.276, 1, 79),
}
LSG = {"coco2014-sd15": {"1.5": (8.71, 0.302), "1.5, longer training": (8.15, 0.304), "2": (9.56, 0.313),
                         "3": (13.21, 0.314), "4.5": (16.59, 0.317)},
       "coco2014-sd21base": {"1.5": (9.52, 0.308), "2": (10.97, 0.318), "3": (13.50, 0.321),
                             "4.5": (16.54, 0.322)}}
# Not confirmed from a primary source (see the notes in published.yaml): tagged secondary. EDM's 2.44
# and Diff-Instruct's 4.53 are methods.md's [paper] numbers, so they carry the tag paper.
SECONDARY = {("imagenet64-cond", "EDM teacher (Heun 256 steps)"), ("imagenet64-cond", "Diff-Instruct")}


def test_published_numbers_are_the_specs_with_their_nfe_and_tags():
    recs = {(r["suite"]["name"], r["method"]["label"]): r
            for r in published_records(LEADERBOARDS / "published.yaml")}
    expected = dict(SPEC)
    for suite, rows in LSG.items():
        for kappa, (fid, clip) in rows.items():
            expected[(suite, f"SiD-LSG (kappa {kappa})")] = (fid, 1, None, clip)
    assert set(recs) == set(expected)
    for key, want in expected.items():
        rec = recs[key]
        m = rec["method"]
        teacher = m["role"] == "teacher"
        assert rec["metrics"]["fid"]["value"] == want[0], key
        assert (m["nfe"], None if teacher else m.get("teacher_nfe")) == want[1:3], key
        if teacher:
            assert m["teacher_nfe"] == m["nfe"]
        if len(want) == 4:
            assert rec["metrics"]["clip_score"]["value"] == want[3], key
            assert rec["metrics"]["clip_score"]["lower_is_better"] is False
        tag = rec["citation"]["source_tag"]
        assert (tag == "secondary") == (key in SECONDARY), key
        if tag == "code":  # read in the authors' repository at a named commit
            assert re.search(r"[\w.-]+/[\w.-]+@[0-9a-f]{7}", rec["citation"]["where"]), key
        assert rec["citation"]["arxiv"] and rec["source"] == "published"
