from importlib.metadata import EntryPoint

import pytest

from sidbench import registry as registry_module
from sidbench.errors import ConfigError
from sidbench.registry import Registry


def _fake_entry_points(monkeypatch, eps):
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [e for e in eps if e.group == group])


def test_broken_plugin_is_reported_by_name_not_raised(monkeypatch):
    eps = [EntryPoint("good", "sidbench.errors:SidbenchError", "sidbench.methods"),
           EntryPoint("bad", "no_such_module_xyz:THING", "sidbench.methods")]
    _fake_entry_points(monkeypatch, eps)
    reg = Registry("method", "sidbench.methods")
    assert reg.names() == ["good"]
    assert "bad" in reg.broken and "ModuleNotFoundError" in reg.broken["bad"].error
    with pytest.raises(ConfigError, match="failed to load"):
        reg.get("bad")


def test_unknown_name_suggests_closest(monkeypatch):
    _fake_entry_points(monkeypatch, [])
    reg = Registry("suite", "sidbench.suites")
    reg.register("cifar10-uncond", object())
    with pytest.raises(ConfigError, match="Did you mean 'cifar10-uncond'"):
        reg.get("cifar10-uncnd")


def test_duplicate_registration_is_an_error(monkeypatch):
    _fake_entry_points(monkeypatch, [])
    reg = Registry("metric", "sidbench.metrics")
    reg.register("fid", object(), "a")
    with pytest.raises(ConfigError, match="registered twice"):
        reg.register("fid", object(), "b")


def test_real_suites_are_registered_through_entry_points():
    from sidbench.registry import SUITES

    names = SUITES.names()
    for expected in ("digits", "toy2d", "cifar10-uncond", "imagenet64-cond", "afhqv2-64", "coco2014-sd15"):
        assert expected in names
    assert not SUITES.broken
