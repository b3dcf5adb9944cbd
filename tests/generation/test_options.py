"""Every bad option of generate() is refused before any work: no folder, no lock file, no manifest."""

import math
import time

import pytest

from sidbench.errors import ConfigError
from sidbench.generation import generate
from tests.generation._nets import GaussDenoiser

NAN, INF = math.nan, math.inf

BAD_OPTIONS = [
    # the NaN/black-image settings of the issue
    {"sigma_min": 0.0}, {"sigma_min": -0.1}, {"sigma_min": NAN}, {"sigma_min": INF},
    {"sigma_max": NAN}, {"sigma_max": INF}, {"sigma_max": -5.0}, {"sigma_max": 0.001},
    {"sigma_min": 1.0, "sigma_max": 1.0},
    {"sigma_init": NAN, "sampler": "onestep"}, {"sigma_init": 0.0, "sampler": "onestep"},
    {"sigma_init": -2.5, "sampler": "onestep"}, {"sigma_init": INF, "sampler": "onestep"},
    {"sigma_init": NAN},  # checked whichever sampler is chosen
    {"rho": 0.0}, {"rho": -7.0}, {"rho": NAN}, {"rho": INF},
    {"num_steps": 1}, {"num_steps": 0}, {"num_steps": -3}, {"num_steps": 2.5}, {"num_steps": True},
    {"num_steps": 10**9},
    {"S_churn": -1.0}, {"S_churn": NAN}, {"S_churn": INF},
    {"S_min": -1.0}, {"S_min": NAN}, {"S_max": NAN}, {"S_max": -INF}, {"S_min": 5.0, "S_max": 1.0},
    {"S_noise": -1.0}, {"S_noise": NAN}, {"S_noise": INF}, {"sigma_max": "80"},
    {"batch_size": 0}, {"batch_size": -4}, {"batch_size": 2.0}, {"writers": 0},
    {"class_idx": 1.5}, {"sampler": "euler"}, {"device": "tpu"}, {"device": "cuda:99"},
    # seeds
    {"seeds": "0-99999999999999"}, {"seeds": "-3"}, {"seeds": "5--3"}, {"seeds": str(2**32)},
    {"seeds": [2**32]}, {"seeds": [-1]}, {"seeds": [1.5]}, {"seeds": [True]}, {"seeds": "0-1000000"},
    {"seeds": "9" * 5000}, {"seeds": range(10**14)}, {"seeds": ""},
]


def _id(options: dict) -> str:
    return ",".join(f"{k}={str(v)[:12]}" for k, v in options.items())


@pytest.mark.parametrize("bad", BAD_OPTIONS, ids=_id)
def test_bad_option_refused_before_any_work(tmp_path, bad):
    kw = {"seeds": "0-3", "num_steps": 4, "progress": False, **bad}
    out = tmp_path / "imgs"
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        generate(GaussDenoiser(), out, kw.pop("seeds"), **kw)
    assert time.perf_counter() - start < 1.0  # huge seed ranges are refused without building them
    assert info.value.hint and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no folder, no lock file, no manifest


def test_zip_mode_refuses_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="sigma_min"):
        generate(GaussDenoiser(), tmp_path / "a.zip", "0-3", sigma_min=0.0, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_output_that_is_the_wrong_kind_refused(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigError, match="not a folder"):
        generate(GaussDenoiser(), tmp_path / "file", "0", num_steps=2, progress=False)
    (tmp_path / "dir.zip").mkdir()
    with pytest.raises(ConfigError, match="not a zip"):
        generate(GaussDenoiser(), tmp_path / "dir.zip", "0", num_steps=2, progress=False)
    assert (tmp_path / "file").read_text() == "not a folder"
    assert not list(tmp_path.glob("*.lock"))
