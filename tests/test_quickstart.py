"""The newcomer's first command: the shipped digits teacher, then every registered distillation method.

Fast: the budget -> steps rule (a formula written out here), which methods run and why the others
do not (plugins installed into a temporary site folder: one without a recipe, one that fails at
import, one whose update raises), every method's recipe cut to the same steps, records kept and
reused, leaderboard versions, and a whole quickstart on 16 images with one training step (IS, FD
and precision/recall only: KID needs 1,000 images) in which a failing plugin is a failed line and
the others still run. Slow: the real command at a tiny budget, every registered method recorded,
the report written, and a rerun that reuses everything and gives the same numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest

import sidbench.workflows.quickstart as qs
from sidbench.cli import main
from sidbench.errors import ConfigError
from sidbench.registry import METHODS
from sidbench.train.config import load_recipe
from tests._plugin_dists import GOOD_METHOD, fresh_registry, on_path, write_dist

SHIPPED = {"sid", "sida", "dmd", "dmd2", "diff-instruct", "add"}

BOOM_METHOD = '''
import dataclasses

from sidbench.methods.base import Update
from sidbench.methods.sid import SID
from sidbench.workflows.quickstart import DISTILL_RECIPES


def boom(ctx):
    raise RuntimeError("boom in the plugin's update")


METHOD = dataclasses.replace(
    SID, name="qs-boom", updates=tuple(Update(u.name, u.network, boom) for u in SID.updates),
    quickstart_recipe={**DISTILL_RECIPES["sid"], "name": "qs-boom-digits", "method": "qs-boom"})
'''

WRONG_RECIPE_METHOD = '''
import dataclasses

from sidbench.methods.sid import SID
from sidbench.workflows.quickstart import DISTILL_RECIPES

METHOD = dataclasses.replace(SID, name="qs-wrong", quickstart_recipe=DISTILL_RECIPES["sid"])
'''

MISSING_FILE_METHOD = '''
import dataclasses

from sidbench.methods.sid import SID

METHOD = dataclasses.replace(SID, name="qs-missing", quickstart_recipe="/nonexistent/qs-missing-digits.yaml")
'''


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """Five plugin distributions, installed as pip would (dist-info + modules on sys.path)."""
    site = tmp_path / "site"
    entries = {name: f"{name.replace('-', '_')}:METHOD"
               for name in ("qs-norecipe", "qs-broken", "qs-boom", "qs-wrong", "qs-missing")}
    modules = {"qs_norecipe": GOOD_METHOD.format(name="qs-norecipe", version="0.1", paper="none"),
               "qs_broken": "raise ImportError('No module named qs_missing_dependency')\n",
               "qs_boom": BOOM_METHOD, "qs_wrong": WRONG_RECIPE_METHOD, "qs_missing": MISSING_FILE_METHOD}
    write_dist(site, "qs-plugins", "0.1", {"sidbench.methods": entries}, modules)
    on_path(monkeypatch, site)
    fresh_registry(monkeypatch, METHODS)
    yield site
    import sys

    for name in modules:
        sys.modules.pop(name, None)


# --- budget ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("budget, steps", [(15, 100), (15.0, 100), (7.5, 50), (30, 200), (1, 7), (0.1, 1),
                                           (0.001, 1), (2.25, 15)])
def test_budget_sets_the_same_steps_for_every_method(budget, steps):
    assert qs.budget_steps(budget) == steps == max(1, round(100 * budget / 15))


@pytest.mark.parametrize("budget", [0, -1, math.nan, math.inf, True, "15"])
def test_a_budget_that_is_not_a_positive_number_is_refused(budget):
    with pytest.raises(ConfigError, match="--budget"):
        qs.budget_steps(budget)


def test_the_default_budget_is_the_same_in_the_cli_the_api_and_the_workflow():
    import inspect

    import sidbench.api as api
    from sidbench.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    budget = next(a for a in sub.choices["quickstart"]._actions if a.dest == "budget")
    api_default = inspect.signature(api.quickstart).parameters["budget"].default
    assert budget.default == api_default == qs.DEFAULT_BUDGET
    assert qs.budget_steps(qs.DEFAULT_BUDGET) == qs.BASE_STEPS == 100


@pytest.mark.parametrize("bad", ["nan", "inf", "-1", "0"])
def test_cli_refuses_a_bad_budget_in_one_line_before_any_work(bad, tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path / "q"), "--budget", bad]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--budget" in err
    assert not (tmp_path / "q").exists()


# --- which methods ---------------------------------------------------------------------------------

def test_every_shipped_distillation_method_is_ready_with_its_digits_recipe():
    found = {c.name: c for c in qs.distillation_methods()}
    assert set(found) >= SHIPPED
    assert "edm" not in found  # teacher training, not distillation
    for name in SHIPPED:
        c = found[name]
        assert c.status == "ready", (name, c.reason)
        assert c.recipe["method"] == name and c.recipe["suite"] == "digits"
    assert found["sid"].recipe is qs.DISTILL_RECIPES["sid"]
    assert found["dmd"].recipe_source == "recipes/dmd-digits.yaml"
    from sidbench.train.config import read_recipe

    assert found["dmd"].recipe == read_recipe(qs.source_recipes_dir() / "dmd-digits.yaml")


def test_a_plugin_without_a_recipe_is_skipped_and_a_broken_one_failed_with_why(plugins):
    found = {c.name: c for c in qs.distillation_methods()}
    assert {n for n, c in found.items() if c.status == "ready"} >= SHIPPED
    norecipe = found["qs-norecipe"]
    assert norecipe.status == "skipped" and "recipes/qs-norecipe-digits.yaml" in norecipe.reason
    assert "quickstart_recipe" in norecipe.reason
    broken = found["qs-broken"]
    assert broken.status == "failed" and "did not load" in broken.reason
    assert "qs_missing_dependency" in broken.reason
    assert found["qs-boom"].status == "ready" and found["qs-boom"].recipe_source == \
        "qs-boom's Method.quickstart_recipe"
    wrong = found["qs-wrong"]
    assert wrong.status == "failed" and "'sid'" in wrong.reason and "not qs-wrong" in wrong.reason
    missing = found["qs-missing"]
    assert missing.status == "skipped" and "/nonexistent/qs-missing-digits.yaml" in missing.reason


def test_the_example_plugin_ships_its_quickstart_recipe(monkeypatch):
    import importlib.util
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "examples" / "sidbench-example-method"
    spec = importlib.util.spec_from_file_location("qs_example_kd", root / "sidbench_example_method" / "kd.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "qs_example_kd", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    path = Path(module.METHOD.quickstart_recipe)
    assert path == root / "recipes" / "example-kd-digits.yaml" and path.is_file()
    from sidbench.train.config import read_recipe

    raw = read_recipe(path)
    assert (raw["method"], raw["suite"]) == ("example-kd", "digits")


def test_methods_filter_names_registered_distillation_methods_only():
    assert [c.name for c in qs.distillation_methods(["sid", "dmd"])] == ["dmd", "sid"]
    with pytest.raises(ConfigError, match="'edm' is not a distillation method"):
        qs.distillation_methods(["edm"])
    with pytest.raises(ConfigError, match="Did you mean 'sid'"):
        qs.distillation_methods(["sdi"])


@pytest.mark.parametrize("methods, message", [("", "names no method"), (" , ", "names no method"),
                                              ("sid,edm", "not a distillation method"),
                                              ([3], "method names")])
def test_api_refuses_bad_methods_before_any_work(methods, message, tmp_path, monkeypatch):
    import sidbench.api as api

    def boom(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(qs, "quickstart", boom)
    with pytest.raises(ConfigError, match=message):
        api.quickstart(out=tmp_path / "q", methods=methods, device="cpu")


# --- recipes cut to the budget ---------------------------------------------------------------------

def test_every_recipe_is_cut_to_the_same_steps_and_keeps_its_method_settings(tmp_path):
    for cand in qs.distillation_methods():
        if cand.status != "ready":
            continue
        before = copy.deepcopy(cand.recipe)
        has_pairs = "pairs" in {f.name for f in dataclasses.fields(METHODS.get(cand.name).settings)}
        pairs = str(tmp_path / "pairs") if has_pairs else None
        cut = load_recipe(qs.quickstart_recipe(cand.recipe, 7, num_images=500, pairs=pairs))
        assert cand.recipe == before  # the registered recipe is not touched
        batch = cut.training.batch
        assert cut.training.total_steps == 7
        assert cut.training.duration_kimg == pytest.approx(7 * batch / 1000)
        assert cut.training.checkpoint_kimg == pytest.approx(math.ceil(7 / qs.CHECKPOINTS) * batch / 1000)
        assert cut.training.eval_kimg == pytest.approx(math.ceil(7 / qs.CURVE_POINTS) * batch / 1000)
        assert cut.training.eval.protocols == ("digits-fd",) and cut.training.eval.num_images == 500
        settings = dict(cand.recipe.get("method_settings", {}))
        if has_pairs:
            settings["pairs"] = pairs
        full = load_recipe({**cand.recipe, "method_settings": settings})
        assert cut.resolved()["method_settings"] == full.resolved()["method_settings"], cand.name
        assert cut.training.networks == full.training.networks and cut.training.batch == full.training.batch
        assert has_pairs == (cand.name == "dmd")
        if has_pairs:
            assert cut.method_settings.pairs == pairs


# --- records and the leaderboard -------------------------------------------------------------------

def _record(label: str, fid: float, created: str = "2026-01-01T00:00:00+00:00", seconds: float = 1.0):
    from sidbench.records import result_record

    metric = {"value": fid, "protocol": {"name": "digits-fd", "version": "1.0.0"}, "lower_is_better": True,
              "num_images": 2000, "seeds": "0-1999", "reference_sha256": "a" * 64,
              "extractor_sha256": "b" * 64, "full_protocol": True}
    return result_record(suite={"name": "digits", "version": "1.0.0"},
                         method={"name": "sid", "version": "1.0.0", "label": label, "role": "generator",
                                 "nfe": 1},
                         metrics={"fid": metric}, environment={"torch": "x", "device": "cpu", "processes": 1},
                         networks={"teacher_sha256": "c" * 64, "generator_sha256": "d" * 64},
                         cost={"train_seconds": seconds}, created=created, extra={"kimg": 3.2})


def test_a_record_is_written_once_and_reused_for_the_same_measurement(tmp_path):
    folder = tmp_path / "records"
    first, reused = qs.keep_record(folder, _record("sid one-step", 30.0))
    assert not reused and first.name == "sid-one-step-3.2-kimg.json"
    data = first.read_bytes()
    # later, slower, the same numbers: the same file, untouched
    again, reused = qs.keep_record(folder, _record("sid one-step", 30.0, "2026-02-02T00:00:00+00:00", 9.0))
    assert (again, reused) == (first, True) and first.read_bytes() == data
    # another measurement of the row: a new file, the first never edited
    other, reused = qs.keep_record(folder, _record("sid one-step", 31.0))
    assert not reused and other.name == "sid-one-step-3.2-kimg.2.json" and first.read_bytes() == data
    assert qs.keep_record(folder, _record("sid one-step", 31.0)) == (other, True)
    assert json.loads(other.read_text())["metrics"]["fid"]["value"] == 31.0


def test_the_leaderboard_gets_a_version_only_when_its_rows_change(tmp_path):
    from sidbench.leaderboards.store import show_version

    records, root = tmp_path / "records", tmp_path / "leaderboards"
    a, _ = qs.keep_record(records, _record("sid one-step", 30.0))
    b, _ = qs.keep_record(records, _record("sida one-step", 25.0))
    board = qs._release(root, "digits", [a, b], 100)
    assert (board["version"], board["released_now"]) == ("v1.0.0", ["v1.0.0"])
    assert qs._release(root, "digits", [a, b], 100)["released_now"] == []  # a rerun: nothing new
    c, _ = qs.keep_record(records, _record("dmd one-step", 40.0))
    assert qs._release(root, "digits", [a, b, c], 100)["released_now"] == ["v1.1.0"]  # a row added: MINOR
    a2, _ = qs.keep_record(records, _record("sid one-step", 29.0))
    board = qs._release(root, "digits", [a2, b, c], 100)
    assert board["released_now"] == ["v1.1.1"]  # a row measured again: PATCH
    shown = show_version(root, "digits")
    assert shown["version"] == "v1.1.1"
    assert [r["row"] for r in shown["rows"]] == ["sida-one-step-3.2-kimg", "sid-one-step-3.2-kimg",
                                                 "dmd-one-step-3.2-kimg"]


# --- the whole quickstart, small -------------------------------------------------------------------

def test_quickstart_runs_every_method_and_a_failing_plugin_is_a_failed_line(plugins, tmp_path, capsys,
                                                                           monkeypatch):
    monkeypatch.setattr(qs, "QUICKSTART_METRICS", ("fid", "is", "pr"))  # KID needs 1,000 images
    out = tmp_path / "qs"
    argv = ["quickstart", "--out", str(out), "--num-images", "16", "--batch-size", "16", "--budget", "0.1",
            "--device", "cpu", "--methods", "sid,qs-boom,qs-broken,qs-norecipe"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    assert result["steps"] == 1
    status = {line["label"]: (line["status"], line["reason"]) for line in result["lines"]}
    assert list(status) == ["teacher heun-18", "teacher heun-2", "qs-boom one-step", "qs-broken one-step",
                            "qs-norecipe one-step", "sid one-step"]
    assert status["qs-boom one-step"] == ("failed", "RuntimeError: boom in the plugin's update")
    assert "boom in the plugin's update" in (out / "qs-boom" / "error.txt").read_text()
    broken = status["qs-broken one-step"]
    assert broken[0] == "failed" and "qs_missing_dependency" in broken[1]
    assert status["qs-norecipe one-step"][0] == "skipped"
    assert {status[k][0] for k in ("teacher heun-18", "teacher heun-2", "sid one-step")} == {"measured"}
    for word in ("failed", "skipped", "report:", "leaderboard:"):
        assert word in printed

    records = {r["method"]["label"]: r for r in result["records"]}
    sid = records["sid one-step"]
    assert (sid["method"]["name"], sid["method"]["nfe"], sid["method"]["teacher_nfe"]) == ("sid", 1, 35)
    assert sid["kimg"] == 0.032 and sid["step"] == 1 and sid["cost"]["train_seconds"] > 0
    assert sid["cost"]["train_cpu_seconds"] > 0 and sid["metrics"]["fid"]["num_images"] == 16
    cut = load_recipe(qs.quickstart_recipe(qs.DISTILL_RECIPES["sid"], 1, num_images=16))
    assert sid["config_hash"] == cut.config_hash()
    files = sorted(p.name for p in (out / "records").iterdir())
    assert files == ["sid-one-step-0.032-kimg.json", "teacher-heun-18.json", "teacher-heun-2.json"]
    board = result["leaderboard"]
    assert board["version"] == "v1.0.0"
    assert (out / "leaderboards" / "digits" / "v1.0.0" / "table.md").is_file()
    html = (out / "report.html").read_text()
    assert result["report"]["path"] == str(out / "report.html") and "sid-digits" in html

    # a rerun: training found finished, images and records reused, the same numbers, no new version
    assert main(argv) == 0
    again = json.loads((out / "results.json").read_text())
    for line in again["lines"]:
        if line["status"] == "measured":
            assert line["reused"] and line["this_run"]["images_generated"] == 0
    assert again["records"] == result["records"]
    assert again["leaderboard"]["released_now"] == [] and again["leaderboard"]["version"] == "v1.0.0"
    assert again["lines"][-1]["this_run"]["steps_trained_now"] == 0


@pytest.mark.slow
def test_quickstart_smoke_every_registered_method_recorded_and_reported(tmp_path, capsys):
    out = tmp_path / "qs"
    argv = ["quickstart", "--out", str(out), "--num-images", "1000", "--batch-size", "250",
            "--budget", "0.15", "--device", "cpu"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    assert result["steps"] == 1
    ready = [c.name for c in qs.distillation_methods() if c.status == "ready"]
    assert set(ready) >= SHIPPED
    labels = {r["method"]["label"]: r for r in result["records"]}
    for name in ready:  # every registered distillation method produced a record
        rec = labels[f"{name} one-step"]
        assert rec["method"]["name"] == name and rec["method"]["nfe"] == 1 and rec["step"] == 1
        assert {"fid", "is", "kid", "precision", "recall"} <= set(rec["metrics"])
    four = labels["add 4-step"]["method"]
    assert four["nfe"] == 4 and len(four["student_sigmas"]) == 4
    many, few = labels["teacher heun-18"], labels["teacher heun-2"]
    assert many["method"]["nfe"] == 35 and few["method"]["nfe"] == 3
    # the shipped teacher is good at its suite's steps and the metrics see the few-step gap
    assert many["metrics"]["fid"]["value"] < 0.1 * few["metrics"]["fid"]["value"]
    assert many["metrics"]["is"]["value"] > 8.5 > few["metrics"]["is"]["value"]
    for line in result["lines"]:
        if line["status"] == "skipped":  # methods other tests registered in-process, without a recipe
            assert METHODS.source(line["method"]) == "tests", line
            continue
        assert line["status"] == "measured", line
        assert (out / "records" / line["record_file"].rsplit("/", 1)[-1]).is_file()
    html = (out / "report.html").read_text()
    for name in ready:
        assert f"{name}-digits" in html
    assert str(out / "report.html") in printed.replace("\n", "")

    assert main(argv) == 0  # a rerun reuses everything and gives the same numbers
    again = json.loads((out / "results.json").read_text())
    assert again["records"] == result["records"] and again["leaderboard"]["released_now"] == []
