"""Every method's settings refuse bad values by name, and the methods are registered by entry point."""

from __future__ import annotations

import pytest

from sidbench.errors import ConfigError
from sidbench.methods import edm, sid, sida
from sidbench.registry import METHODS

METHODS_UNDER_TEST = [edm.EDM, sid.SID, sida.SIDA]

# (setting, bad value, what the message says): one row per class of bad input.
BAD = [
    ("P_std", "1.2", "must be a number"),   # a YAML string
    ("P_std", True, "must be a number"),    # a bool is not a number
    ("P_std", None, "must be a number"),
    ("P_std", float("nan"), "finite"),
    ("P_mean", float("inf"), "finite"),
    ("P_std", 0.0, "outside"),               # open lower end
    ("P_std", -1.0, "outside"),
    ("augment_p", 1.5, "outside"),
    ("augment_p", -0.1, "outside"),
    ("augment_xflip", -1.0, "outside"),
]
SID_BAD = [
    ("tmax", 800.0, "must be an integer"),
    ("tmax", 0, "outside"),
    ("tmax", 1001, "outside"),
    ("sigma_init", 0.0, "outside"),
    ("sigma_max", 0.001, "outside"),         # below sigma_min
    ("alpha", float("nan"), "finite"),
    ("loss_scale", 0, "outside"),
    ("fake_loss_scale", "1", "must be a number"),
]
SIDA_BAD = [
    ("gan_scale", -0.01, "outside"),
    ("disc_scale", float("nan"), "finite"),
    ("generator_start_kimg", -1, "outside"),
    ("gan_start_kimg", "200", "must be a number"),
]


def cases():
    for m in METHODS_UNDER_TEST:
        for row in BAD:
            yield m, *row
    for m in (sid.SID, sida.SIDA):
        for row in SID_BAD:
            yield m, *row
    for row in SIDA_BAD:
        yield sida.SIDA, *row


@pytest.mark.parametrize("method,key,value,message", list(cases()))
def test_bad_values_are_refused_by_name(method, key, value, message):
    with pytest.raises(ConfigError, match=message) as err:
        method.make_settings({key: value})
    assert key in str(err.value) and method.name in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("method", METHODS_UNDER_TEST)
def test_unknown_keys_name_the_nearest(method):
    with pytest.raises(ConfigError, match="Did you mean 'P_mean'"):
        method.make_settings({"P_meen": 0.0})


def test_label_dropout_must_be_a_probability_below_one():
    for bad in (1.0, -0.2):
        with pytest.raises(ConfigError, match="label_dropout"):
            edm.EDM.make_settings({"label_dropout": bad})
    assert edm.EDM.make_settings({"label_dropout": 0.1}).label_dropout == 0.1


def test_integers_are_accepted_for_float_settings():
    s = sid.SID.make_settings({"alpha": 1, "sigma_init": 2, "augment_p": 1})
    assert (s.alpha, s.sigma_init, s.augment_p) == (1, 2, 1)


def test_methods_are_registered_by_entry_point():
    assert METHODS.get("sid") is sid.SID
    assert METHODS.get("sida") is sida.SIDA
    assert METHODS.get("edm") is edm.EDM
    assert {"sid", "sida", "edm"} <= set(METHODS.names())
    assert not {"sid", "sida", "edm"} & set(METHODS.broken)
