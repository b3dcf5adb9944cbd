"""Plugin robustness: a bad plugin is reported by name with its error and breaks nothing else.

The plugins are real distributions on sys.path (a dist-info with entry_points.txt, as pip leaves
it), found by the registry's own `importlib.metadata.entry_points` call: one that fails at import
(an exception, a missing module, `sys.exit`), two distributions registering one name, one taking
a name sidbench provides, objects that are not methods, a method that calls itself by another name.
"""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint
from types import SimpleNamespace

import pytest

from sidbench import registry as registry_module
from sidbench.cli import main
from sidbench.errors import ConfigError
from sidbench.registry import METHODS, Registry
from tests._plugin_dists import drop_modules_under, fresh_registry, good_method, on_path, write_dist

GROUP = "sidbench.methods"
METHOD_CLASS = "sidbench.methods.base.Method"


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A site-packages-like folder on sys.path; the modules imported from it are forgotten afterwards."""
    root = tmp_path / "site"
    root.mkdir()
    on_path(monkeypatch, root)
    yield root
    drop_modules_under(root)


def _methods() -> Registry:
    return Registry("method", GROUP, expects=METHOD_CLASS)


def _plugins(site) -> None:
    """plug-a 1.2.3: one good method, three that fail at import; plug-b 0.9: a second 'twin'."""
    write_dist(site, "plug-a", "1.2.3", {GROUP: {
        "plug-good": "plug_a_good:METHOD",
        "plug-missing": "plug_a_no_such_module:METHOD",
        "plug-raises": "plug_a_raises:METHOD",
        "plug-exits": "plug_a_exits:METHOD",
        "twin": "plug_a_twin:METHOD",
    }}, modules={"plug_a_good": good_method("plug-good"),
                 "plug_a_raises": "raise RuntimeError('the plugin needs CUDA 99')\n",
                 "plug_a_exits": "import sys\nsys.exit(3)\n",
                 "plug_a_twin": good_method("twin")})
    write_dist(site, "plug-b", "0.9", {GROUP: {"twin": "plug_b_twin:METHOD"}},
               modules={"plug_b_twin": good_method("twin")})


def test_a_plugin_failing_at_import_is_reported_by_name_and_the_others_load(site):
    _plugins(site)
    reg = _methods()
    names = reg.names()
    assert "plug-good" in names and {"sid", "sida", "edm"} <= set(names)  # sidbench's own still load
    assert reg.get("plug-good").paper == "A Paper (Someone, 2099)"
    assert reg.source("plug-good") == "plug-a" and reg.distribution("plug-good") == "plug-a 1.2.3"
    expected = {"plug-missing": "ModuleNotFoundError: No module named 'plug_a_no_such_module'",
                "plug-raises": "RuntimeError: the plugin needs CUDA 99",
                "plug-exits": "SystemExit: 3"}
    for name, error in expected.items():
        assert name not in names
        broken = reg.broken[name]
        assert (broken.source, broken.version, broken.error) == ("plug-a", "1.2.3", error)
        with pytest.raises(ConfigError) as exc:
            reg.get(name)
        assert f"method '{name}' from plug-a failed to load: {error}" in str(exc.value)


def test_two_distributions_registering_one_name_use_neither(site):
    _plugins(site)
    reg = _methods()
    assert "twin" not in reg.names() and "plug-good" in reg.names()
    broken = reg.broken["twin"]
    assert set(broken.source.split(", ")) == {"plug-a", "plug-b"}
    assert "plug-a (plug_a_twin:METHOD)" in broken.error and "plug-b (plug_b_twin:METHOD)" in broken.error
    assert "plug_a_twin" not in sys.modules and "plug_b_twin" not in sys.modules  # neither was imported
    with pytest.raises(ConfigError, match="2 entry points register method 'twin'.*uninstall one"):
        reg.get("twin")


def test_a_plugin_cannot_take_a_name_sidbench_provides(site):
    from sidbench.methods.sid import SID

    write_dist(site, "plug-c", "1.0", {GROUP: {"sid": "plug_c_sid:METHOD"}},
               modules={"plug_c_sid": good_method("sid")})
    reg = _methods()
    assert reg.get("sid") is SID and reg.source("sid") == "sidbench"
    broken = reg.broken["sid"]
    assert broken.source == "plug-c" and "sidbench itself provides method 'sid'" in broken.error
    assert "plug_c_sid" not in sys.modules


def test_an_entry_point_that_is_not_a_method_is_refused(site):
    write_dist(site, "plug-d", "1.0", {GROUP: {
        "a-function": "plug_d:make_method",
        "the-class": "sidbench.methods.base:Method",
        "a-suite": "sidbench.suites.digits:SUITE",
        "duck": "plug_d:DUCK",
        "alias": "plug_d:METHOD",
    }}, modules={"plug_d": good_method("plug-d-real") + (
        "\ndef make_method():\n    return METHOD\n\n"
        "from types import SimpleNamespace\n"
        "DUCK = SimpleNamespace(**{k: getattr(METHOD, k) for k in ('name', 'version', 'paper', 'networks', "
        "'settings', 'updates', 'phases')})\n")})
    reg = _methods()
    assert not {"a-function", "the-class", "a-suite", "duck", "alias"} & set(reg.names())
    assert "plug_d:make_method is a function, not a sidbench.methods.base.Method" in \
        reg.broken["a-function"].error
    assert "is the class Method, not" in reg.broken["the-class"].error
    assert "is a Suite, not" in reg.broken["a-suite"].error
    assert "is a SimpleNamespace, not" in reg.broken["duck"].error  # the right attributes are not enough
    assert "named 'alias' but its method calls itself 'plug-d-real'" in reg.broken["alias"].error
    assert "sid" in reg.names()


def test_a_name_registered_in_process_keeps_its_object(site):
    write_dist(site, "plug-e", "1.0", {GROUP: {"mine": "plug_e:METHOD"}},
               modules={"plug_e": good_method("mine")})
    reg = _methods()
    mine = SimpleNamespace(name="mine")
    reg.register("mine", mine, source="tests")
    assert reg.get("mine") is mine
    assert "already registered by tests" in reg.broken["mine"].error and reg.broken["mine"].source == "plug-e"
    with pytest.raises(ConfigError, match="registered twice"):  # in-process duplicates still raise
        reg.register("mine", SimpleNamespace(name="mine"), source="elsewhere")


def test_one_distribution_seen_twice_on_the_path_is_one_claim(monkeypatch):
    ep = EntryPoint("edm", "sidbench.methods.edm:EDM", GROUP)
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [ep, ep] if group == GROUP else [])
    reg = _methods()
    from sidbench.methods.edm import EDM

    assert reg.names() == ["edm"] and reg.get("edm") is EDM and not reg.broken


def test_a_broken_suite_breaks_no_other_suite(site):
    write_dist(site, "plug-f", "1.0", {"sidbench.suites": {"bad-suite": "plug_f_missing:SUITE",
                                                            "not-a-suite": "sidbench.methods.sid:SID"}})
    reg = Registry("suite", "sidbench.suites", expects="sidbench.suites.base.Suite")
    assert {"digits", "cifar10-uncond"} <= set(reg.names())
    assert "ModuleNotFoundError" in reg.broken["bad-suite"].error
    assert "is a Method, not a sidbench.suites.base.Suite" in reg.broken["not-a-suite"].error


# ------------------------------------------------------------------- through the CLI and the API ----

@pytest.fixture
def plugins_installed(site, monkeypatch):
    _plugins(site)
    return fresh_registry(monkeypatch, METHODS)


def test_ls_lists_good_and_broken_plugins_with_their_distribution(plugins_installed, capsys, monkeypatch):
    import sidbench

    monkeypatch.setenv("COLUMNS", "250")  # rich wraps the table at the terminal's width

    rows = {r["name"]: r for r in sidbench.ls("methods")["methods"]}
    good = rows["plug-good"]
    assert (good["version"], good["paper"], good["source"], good["distribution"], good["broken"]) == \
        ("2.0.1", "A Paper (Someone, 2099)", "plug-a", "plug-a 1.2.3", None)
    assert rows["sid"]["distribution"].startswith("sidbench ") and "arXiv:2404.04057" in rows["sid"]["paper"]
    assert rows["plug-raises"]["broken"] == "RuntimeError: the plugin needs CUDA 99"
    assert rows["plug-raises"]["distribution"] == "plug-a 1.2.3"
    assert "plug-a" in rows["twin"]["source"] and "plug-b" in rows["twin"]["source"]
    assert main(["ls", "methods"]) == 0
    out = capsys.readouterr().out
    for text in ("plug-good", "plug-a 1.2.3", "A Paper", "BROKEN", "CUDA 99", "SystemExit", "sid"):
        assert text in out


def test_validate_names_the_load_error_of_a_broken_plugin(plugins_installed, capsys):
    rc = main(["validate", "plug-raises"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1, err
    assert "method 'plug-raises' from plug-a failed to load: RuntimeError: the plugin needs CUDA 99" in err
    assert "invalid choice" not in err
    rc = main(["validate", "twin"])
    err = capsys.readouterr().err
    assert rc == 1 and "2 entry points register method 'twin'" in err
    with pytest.raises(SystemExit) as exc:  # a name nothing registers is still argparse's error
        main(["validate", "plug-nothing"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
