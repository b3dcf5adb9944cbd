"""The CLI mirrors the API, and every class of bad input is one line that names the option, before any work.

The tests walk the real parsers, so a new verb or option is covered without editing them:
every option maps to an API parameter of the same name and default; every choice-taking
option, misspelt, names itself, lists the valid choices and suggests one; every misspelt
option gets a suggestion; every output option refuses a directory / file / read-only
location at once; every numeric option refuses nan, inf and negatives without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math

import pytest

import sidbench
import sidbench.api as api
from sidbench.cli import GLOBAL_OPTIONS, VERBS, build_parser, main, subparser
from tests._outputs import make_read_only

PARSER = build_parser()


def _actions(verb: str) -> list[argparse.Action]:
    return [a for a in subparser(PARSER, verb)._actions if a.dest not in GLOBAL_OPTIONS]


def _all_actions() -> list[tuple[str, argparse.Action]]:
    return [(verb, a) for verb in VERBS for a in _actions(verb)]


def _id(item: tuple[str, argparse.Action]) -> str:
    verb, action = item
    return f"{verb}:{action.dest}"


def _api_function(verb: str):
    return getattr(api, VERBS[verb][1])


def _longs(action: argparse.Action) -> list[str]:
    return [s for s in action.option_strings if s.startswith("--")]


def _run(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of `sidbench ARGV` (argparse errors exit 2, user errors return 1)."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


def _one_line(err: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err, err


# --- the CLI mirrors the API ---------------------------------------------------------------------

def test_every_verb_has_its_api_function_at_the_top_level():
    assert sorted(api.__all__) == sorted(sidbench.API) == sorted(fn for _, fn, _ in VERBS.values())
    for _verb, (_module, fn, _help) in VERBS.items():
        assert callable(getattr(sidbench, fn))
        assert inspect.signature(getattr(sidbench, fn)) == inspect.signature(getattr(api, fn))


@pytest.mark.parametrize("item", _all_actions(), ids=_id)
def test_option_is_the_api_parameter_with_the_same_name_and_default(item):
    verb, action = item
    params = inspect.signature(_api_function(verb)).parameters
    assert action.dest in params, f"sidbench {verb}: option {action.dest} is no parameter of the API"
    param = params[action.dest]
    if action.required or (not action.option_strings and action.nargs is None):
        assert param.default is inspect.Parameter.empty, f"{action.dest} is required on the CLI only"
    else:
        default = action.default
        assert param.default == default or (isinstance(default, float) and math.isnan(default)
                                            and math.isnan(param.default)), \
            f"{verb} {action.dest}: CLI default {default!r} != API default {param.default!r}"
    if action.option_strings:
        primary = _longs(action)[0]
        assert primary == "--" + action.dest.replace("_", "-"), f"primary spelling {primary} != {action.dest}"
        for old in _longs(action)[1:]:
            assert old in (action.help or ""), f"alias {old} of {primary} is not named in its help"


def test_required_api_parameters_are_required_options():
    for verb in VERBS:
        cli = {a.dest: a for a in _actions(verb)}
        for name, param in inspect.signature(_api_function(verb)).parameters.items():
            if param.default is inspect.Parameter.empty:
                assert name in cli and (cli[name].required or not cli[name].option_strings), (verb, name)


def test_old_spellings_still_parse_to_the_new_names():
    args = PARSER.parse_args(["generate", "--generator", "digits", "--steps", "5", "--num", "3",
                              "--batch", "2", "--class", "1", "--churn", "0.5", "--out", "x"])
    assert (args.network, args.num_steps, args.num_images, args.batch_size, args.class_idx, args.s_churn) == \
        ("digits", 5, 3, 2, 1, 0.5)
    # --teacher is now a text-to-image generator's teacher; alone, api.generate samples it as the network
    assert (PARSER.parse_args(["generate", "--teacher", "digits", "--out", "x"]).teacher) == "digits"


# --- misspelt verbs, options and choices ---------------------------------------------------------

def test_unknown_verb_suggests_and_points_to_help(capsys):
    rc, err = _run(["generat"], capsys)
    assert rc == 2 and "unknown verb 'generat'" in err and "Did you mean 'generate'" in err
    _one_line(err)


def _choice_actions() -> list[tuple[str, argparse.Action]]:
    return [(v, a) for v, a in _all_actions() if a.choices is not None]


def _misspell(word: str) -> str:
    return word[:-1] if len(word) > 3 else word + "x"


def test_choice_options_are_found():
    found = {_id(x) for x in _choice_actions()}
    assert {"generate:sampler", "ls:kind", "train-teacher:suite", "eval:suite", "convert:role",
            "validate:method"} <= found


@pytest.mark.parametrize("item", _choice_actions(), ids=_id)
def test_misspelt_choice_names_the_option_lists_the_choices_and_suggests(item, capsys):
    verb, action = item
    choices = [str(c) for c in action.choices]
    bad = _misspell(choices[0])
    assert bad not in choices
    argv = [verb, *(_longs(action)[:1]), bad]
    rc, err = _run(argv, capsys)
    assert rc == 2
    _one_line(err)
    name = _longs(action)[0] if action.option_strings else action.dest
    assert f"{name}: invalid choice '{bad}'" in err and "unknown verb" not in err
    assert f"Did you mean '{choices[0]}'" in err
    for c in choices:
        assert c in err


def _misspelt_option(option: str, known: list[str]) -> str | None:
    """Drop a middle letter of the name; None when that is still an option or an abbreviation of one."""
    body = option[2:]
    bad = "--" + body[: len(body) // 2] + body[len(body) // 2 + 1:]
    return None if any(k.startswith(bad) for k in known) else bad


def _option_cases() -> list[tuple[str, str, str]]:
    cases = []
    for verb in VERBS:
        known = [s for a in subparser(PARSER, verb)._actions for s in a.option_strings]
        for action in _actions(verb):
            for option in _longs(action)[:1]:
                bad = _misspelt_option(option, known)
                if bad is not None:
                    cases.append((verb, option, bad))
    return cases


@pytest.mark.parametrize("verb, option, bad", _option_cases(), ids=lambda x: str(x))
def test_misspelt_option_gets_a_suggestion(verb, option, bad, capsys):
    rc, err = _run([verb, bad, "1"], capsys)
    assert rc == 2
    _one_line(err)
    assert f"unrecognized arguments: {bad}" in err
    assert f"Did you mean '{option}'?" in err


def test_env_jsn_suggests_json(capsys):
    rc, err = _run(["env", "--jsn"], capsys)
    assert rc == 2
    assert err.strip() == "sidbench env: error: unrecognized arguments: --jsn. Did you mean '--json'?"


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_is_accepted_before_and_after_the_verb(where, tmp_path):
    from sidbench.errors import SidbenchError

    rest = ["--network", str(tmp_path / "missing"), "--num-images", "2", "--out", str(tmp_path / "o")]
    argv = ["--debug", "generate", *rest] if where == "before" else ["generate", *rest, "--debug"]
    with pytest.raises(SidbenchError):
        main(argv)


# --- outputs are checked before the work ---------------------------------------------------------

# Every heavy step a verb can take: each raises if reached, so a check that comes too late fails the test.
_WORK = [("sidbench.nets.native", "load_network"), ("sidbench.generation", "generate"),
         ("sidbench.metrics.evaluate", "evaluate"), ("sidbench.metrics.evaluate", "evaluate_seed_sets"),
         ("sidbench.metrics.evaluate", "compute_reference"), ("sidbench.nets.persistence", "convert_pickle"),
         ("sidbench.nets.state_dict", "convert_state_dict"), ("sidbench.train.teacher", "train_teacher"),
         ("sidbench.workflows.quickstart", "quickstart"), ("sidbench.train.run", "train"),
         ("sidbench.train.config", "load_recipe"), ("sidbench.workflows.validate", "validate_method"),
         ("sidbench.generation.pairs", "make_pairs"), ("sidbench.reports.build", "build_content")]


@pytest.fixture
def no_work(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    for module, name in _WORK:
        monkeypatch.setattr(importlib.import_module(module), name, boom)


# verb -> (the other arguments it needs, its output option, what the output is)
OUTPUTS = {
    "generate": (["--network", "digits", "--num-images", "2"], "--out", "dir_or_zip"),
    "eval": (["--images", "{tmp}/images", "--suite", "digits"], "--json", "file"),
    "refstats": (["--suite", "digits"], "--out", "file"),
    "convert": (["{tmp}/net.pkl", "--trust-pickle"], "--out", "dir"),
    "train-teacher": (["--suite", "digits"], "--out", "dir"),
    "quickstart": (["--num-images", "2"], "--out", "dir"),
    "distill": (["{tmp}/recipe.yaml"], "--outdir", "dir"),
    "validate": (["sid"], "--outdir", "dir"),
    "pairs": (["--suite", "digits", "--num-pairs", "2"], "--out", "dir"),
    "report": (["{tmp}/run"], "--out", "file"),
}


def test_every_output_option_is_covered():
    outputs = {verb for verb, a in _all_actions() if a.dest in ("out", "outdir", "json") and a.nargs != 0}
    assert outputs == set(OUTPUTS)


def _argv(verb: str, tmp_path, extra: list[str]) -> list[str]:
    (tmp_path / "net.pkl").write_bytes(b"not read")
    others = [a.replace("{tmp}", str(tmp_path)) for a in OUTPUTS[verb][0]]
    return [verb, *others, *extra]


def _output_cases():
    for verb, (_, option, kind) in OUTPUTS.items():
        name = "x.npz" if verb == "refstats" else "x.json" if kind == "file" else "x"
        if kind in ("file", "dir_or_zip"):
            zip_name = "x.zip" if kind == "dir_or_zip" else name
            yield verb, option, zip_name, "dir", "is an existing directory"
        if kind in ("dir", "dir_or_zip"):
            yield verb, option, name, "file", "is an existing file"
        yield verb, option, f"f/sub/{name}", "parent-file", "is a file, not a folder"
        yield verb, option, f"ro/{name}", "read-only", "not writable|read-only"


@pytest.mark.parametrize("verb, option, name, make, cause", list(_output_cases()), ids=lambda x: str(x))
def test_bad_output_is_refused_before_any_work(verb, option, name, make, cause, tmp_path, capsys, no_work,
                                                monkeypatch):
    import re

    out = tmp_path / name
    if make == "dir":
        out.mkdir()
    elif make == "file":
        out.write_bytes(b"x")
    elif make == "parent-file":
        (tmp_path / "f").write_bytes(b"x")
    else:
        make_read_only(tmp_path / "ro", monkeypatch)
    rc, err = _run(_argv(verb, tmp_path, [option, str(out)]), capsys)
    (tmp_path / "ro").exists() and (tmp_path / "ro").chmod(0o755)
    assert rc == 1, err
    _one_line(err)
    assert err.startswith(f"sidbench {verb}: error: {option} ") and re.search(cause, err), err


# --- numbers are checked before the work ---------------------------------------------------------

def _numeric_actions() -> list[tuple[str, argparse.Action]]:
    return [(v, a) for v, a in _all_actions() if a.type in (int, float)]


def test_numeric_options_are_found():
    found = {_id(x) for x in _numeric_actions()}
    assert {"generate:rho", "generate:num_steps", "train-teacher:lr", "train-teacher:kimg", "eval:sigma_init",
            "refstats:max_images", "quickstart:few_steps", "convert:sigma_init", "validate:steps"} <= found


def _numeric_cases():
    for verb, action in _numeric_actions():
        for value in ("nan", "inf", "-1"):
            if action.dest == "s_max" and value == "inf":
                continue  # S_max = inf is EDM's default: no upper limit
            yield verb, action, value


NUMERIC_CONTEXT = {
    "generate": ["--network", "digits", "--num-images", "2"], "eval": ["--images", "{tmp}/images"],
    "refstats": ["--suite", "digits"], "convert": ["{tmp}/net.pkl", "--role", "generator"],
    "train-teacher": ["--suite", "digits"], "quickstart": [], "distill": ["{tmp}/recipe.yaml"],
    "validate": ["sid"], "pairs": ["--suite", "digits", "--num-pairs", "2"], "report": ["{tmp}/run"],
}


@pytest.mark.parametrize("verb, action, value", list(_numeric_cases()),
                         ids=lambda x: x.dest if isinstance(x, argparse.Action) else str(x))
def test_bad_number_is_one_line_naming_the_option_before_any_work(verb, action, value, tmp_path, capsys,
                                                                   no_work):
    (tmp_path / "net.pkl").write_bytes(b"not read")
    context = [a.replace("{tmp}", str(tmp_path)) for a in NUMERIC_CONTEXT[verb]]
    out = ["--json", str(tmp_path / "r.json")] if verb == "eval" else \
        ["--out", str(tmp_path / ("r.npz" if verb == "refstats" else "o"))]
    rc, err = _run([verb, *context, *out, _longs(action)[0], value], capsys)
    assert rc in (1, 2), err
    _one_line(err)
    low = err.lower()
    assert _longs(action)[0] in low or action.dest in low, err


def test_rho_zero_is_refused(tmp_path, capsys, no_work):
    argv = ["generate", "--network", "digits", "--num-images", "2", "--out", tmp_path / "o", "--rho", "0"]
    rc, err = _run(argv, capsys)
    assert rc == 1 and "rho" in err
    _one_line(err)


def test_huge_seed_range_is_refused_at_once(tmp_path, capsys, no_work):
    import time

    t0 = time.perf_counter()
    argv = ["generate", "--network", "digits", "--seeds", "0-99999999999999", "--out", tmp_path / "o"]
    rc, err = _run(argv, capsys)
    assert rc == 1 and "seed" in err and time.perf_counter() - t0 < 5
    _one_line(err)


# --- devices -------------------------------------------------------------------------------------

DEVICE_CONTEXT = {**NUMERIC_CONTEXT, "eval": ["--images", "{tmp}/images", "--json", "{tmp}/r.json"],
                  "generate": ["--network", "digits", "--num-images", "2", "--out", "{tmp}/o"],
                  "refstats": ["--suite", "digits", "--out", "{tmp}/r.npz"],
                  "train-teacher": ["--suite", "digits", "--out", "{tmp}/t"],
                  "quickstart": ["--out", "{tmp}/q"], "distill": ["{tmp}/recipe.yaml", "--outdir", "{tmp}/o"],
                  "pairs": ["--suite", "digits", "--num-pairs", "2", "--out", "{tmp}/p"],
                  "report": ["{tmp}/run", "--out", "{tmp}/r.html"]}


@pytest.mark.parametrize("verb", [v for v, a in _all_actions() if a.dest == "device"])
@pytest.mark.parametrize("device", ["cuda", "cuda:7", "tpu", "cpu:x"])
def test_unavailable_or_unknown_device_is_one_line(verb, device, tmp_path, capsys, no_work):
    import torch

    present = torch.cuda.is_available() if device == "cuda" else torch.cuda.device_count() > 7
    if device.startswith("cuda") and present:
        pytest.skip("this machine has the device")
    context = [a.replace("{tmp}", str(tmp_path)) for a in DEVICE_CONTEXT[verb]]
    rc, err = _run([verb, *context, "--device", device], capsys)
    assert rc == 1 and "device" in err, err
    _one_line(err)
