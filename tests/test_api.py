"""The Python API: cheap to import, the README's example runs, defaults from suites and network records."""

from __future__ import annotations

import importlib
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sidbench
from sidbench.errors import AssetError, ConfigError, DatasetError, SidbenchError

README = Path(__file__).resolve().parent.parent / "README.md"
TINY = {"class_name": "EDMPrecond",
        "init_kwargs": {"img_resolution": 8, "img_channels": 1, "label_dim": 0, "model_type": "SongUNet",
                        "model_channels": 16, "channel_mult": [1], "num_blocks": 1, "attn_resolutions": []}}


def _tiny_network(out: Path, **record) -> Path:
    import torch

    from sidbench.nets.build import build_network
    from sidbench.nets.native import save_network

    torch.manual_seed(0)
    save_network(build_network(TINY), TINY, out, **record)
    return out


class Captured(Exception):
    """Raised by a stand-in for a heavy function, carrying what it was called with."""

    def __init__(self, *args, **kwargs):
        super().__init__("captured")
        self.args_, self.kwargs = args, kwargs


def _capture(monkeypatch, module: str, name: str) -> None:
    def stand_in(*args, **kwargs):
        raise Captured(*args, **kwargs)

    monkeypatch.setattr(importlib.import_module(module), name, stand_in)


# --- import ------------------------------------------------------------------------------------

def test_import_and_cli_parsers_do_not_import_torch():
    code = ("import sys, sidbench\n"
            "assert 'torch' not in sys.modules, 'import sidbench'\n"
            "assert {'evaluate', 'generate', 'ls'} <= set(dir(sidbench))\n"
            "from sidbench.cli import build_parser\n"
            "build_parser()\n"
            "assert 'torch' not in sys.modules, 'building every verb parser'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_generate_is_the_api_function_next_to_the_generation_package():
    import inspect

    import sidbench.api
    import sidbench.generation.lock  # noqa: F401  (the library package has another name)

    assert sidbench.generate is sidbench.api.generate
    assert inspect.isfunction(sidbench.generate)


def test_api_choices_are_the_librarys():
    import sidbench.api as api
    from sidbench.nets.native import CONVERTIBLE_ROLES
    from sidbench.nets.sampler import SAMPLERS
    from sidbench.train.teacher import _SOURCES

    assert api.ROLES == CONVERTIBLE_ROLES and api.SAMPLERS == SAMPLERS
    assert sorted(api.TRAINABLE_SUITES) == sorted(_SOURCES)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'evaluat'"):
        sidbench.evaluat  # noqa: B018


# --- ls, env -----------------------------------------------------------------------------------

def test_ls_returns_rows_and_refuses_an_unknown_kind():
    rows = sidbench.ls("suites")
    assert list(rows) == ["suites"]
    digits = next(r for r in rows["suites"] if r["name"] == "digits")
    assert digits["version"] and digits["broken"] is None
    with pytest.raises(ConfigError, match="Did you mean 'suites'"):
        sidbench.ls("suite")


def test_env_json_is_valid_json_of_the_same_report():
    report = sidbench.env()
    text = sidbench.env(json=True)
    assert json.loads(text).keys() == report.keys() == {"environment", "assets"}


# --- generate ----------------------------------------------------------------------------------

def test_the_shipped_teacher_is_found_by_name(tmp_path):
    summary = sidbench.generate(network="digits", num_images=2, num_steps=2, out=tmp_path / "g",
                                progress=False)
    assert summary.written == 2
    assert sorted(p.name for p in (tmp_path / "g").glob("*.png")) == ["000000.png", "000001.png"]


def test_cli_teacher_digits_works(tmp_path, capsys):
    from sidbench.cli import main

    assert main(["generate", "--teacher", "digits", "--num-images", "1", "--num-steps", "2",
                 "--out", str(tmp_path / "g")]) == 0
    assert "1 images written" in capsys.readouterr().out


def test_suite_teacher_and_heun_settings_are_the_defaults(monkeypatch, tmp_path):
    _capture(monkeypatch, "sidbench.generation", "generate")
    with pytest.raises(Captured) as got:
        sidbench.generate(suite="digits", num_images=3, out=tmp_path / "g")
    from sidbench.suites import get_suite

    teacher = get_suite("digits").teacher
    kw = got.value.kwargs
    assert (kw["sampler"], kw["num_steps"], kw["sigma_min"], kw["sigma_max"], kw["rho"]) == \
        ("heun", teacher.heun_steps, teacher.sigma_min, teacher.sigma_max, teacher.rho)
    assert got.value.args_[2] == [0, 1, 2]
    with pytest.raises(Captured) as got:
        sidbench.generate(suite="digits", num_images=3, num_steps=7, rho=5.0, out=tmp_path / "g")
    assert (got.value.kwargs["num_steps"], got.value.kwargs["rho"]) == (7, 5.0)


def test_network_of_another_suite_is_refused_naming_the_fact(tmp_path):
    with pytest.raises(AssetError, match=r"resolution 16 \(suite: 32\)"):
        sidbench.generate(network="digits", suite="cifar10-uncond", num_images=2, out=tmp_path / "g")
    assert not (tmp_path / "g").exists()


def test_generator_record_sets_sampler_and_sigma_init(monkeypatch, tmp_path):
    gen = _tiny_network(tmp_path / "gen", role="generator", sigma_init=1.5)
    _capture(monkeypatch, "sidbench.generation", "generate")
    with pytest.raises(Captured) as got:
        sidbench.generate(network=gen, num_images=2, out=tmp_path / "g")
    assert (got.value.kwargs["sampler"], got.value.kwargs["sigma_init"]) == ("onestep", 1.5)
    with pytest.raises(Captured) as got:
        sidbench.generate(network=gen, num_images=2, out=tmp_path / "g", sampler="heun", sigma_init=2.0)
    assert (got.value.kwargs["sampler"], got.value.kwargs["sigma_init"]) == ("heun", 2.0)


# --- evaluate ----------------------------------------------------------------------------------

def test_suite_protocols_are_the_default_metrics(monkeypatch, tmp_path):
    from sidbench.data.digits import DigitsDataset

    _capture(monkeypatch, "sidbench.metrics.evaluate", "evaluate")
    with pytest.raises(Captured) as got:
        sidbench.evaluate(images=tmp_path, suite="digits")
    _images, ref, metrics, protocols = got.value.args_
    assert metrics == ["fid", "is", "kid", "pr"]
    assert sorted(protocols) == ["digits-fd", "digits-is", "digits-kid", "digits-pr"]
    assert str(ref).endswith("ref-stats.npz") and isinstance(got.value.kwargs["ref_images"], DigitsDataset)
    with pytest.raises(Captured) as got:
        sidbench.evaluate(images=tmp_path, suite="digits", metrics="fid,is", protocol=["is-10split"])
    assert got.value.args_[2:] == (["fid", "is"], ["digits-fd", "is-10split"])
    with pytest.raises(Captured) as got:
        sidbench.evaluate(images=tmp_path, ref="r.npz")
    assert got.value.args_[2:] == (["fid"], None)  # no suite: FID under its default protocol


def test_reference_statistics_of_another_kind_are_refused_under_a_suite(tmp_path):
    from sidbench.metrics.reference import save_reference

    save_reference(tmp_path / "other.npz", {"mu": np.zeros(5), "sigma": np.eye(5), "num_images": 1797})
    with pytest.raises(AssetError, match="5-d features"):
        sidbench.evaluate(images=tmp_path, suite="digits", metrics="fid", ref=tmp_path / "other.npz")


def test_captions_are_read_one_per_newline(monkeypatch, tmp_path):
    (tmp_path / "captions.txt").write_bytes("a cat\u2028on a mat\r\nsecond\n".encode())
    _capture(monkeypatch, "sidbench.metrics.evaluate", "evaluate")
    with pytest.raises(Captured) as got, pytest.warns(UserWarning, match="not the pinned"):
        sidbench.evaluate(images=tmp_path, metrics="clip_score", captions=tmp_path / "captions.txt")
    captions = got.value.kwargs["captions"]
    assert list(captions) == ["a cat\u2028on a mat", "second"] and captions.sha256


def test_generator_under_eval_uses_its_recorded_sigma_init(monkeypatch, tmp_path):
    gen = _tiny_network(tmp_path / "gen", role="generator", sigma_init=1.5)
    _capture(monkeypatch, "sidbench.metrics.image_source", "onestep_renderer")
    with pytest.raises(Captured) as got:
        sidbench.evaluate(generator=gen, num_images=4, ref="r.npz")
    assert got.value.args_[1] == 1.5


def test_a_teacher_is_not_evaluated_as_a_one_step_generator(tmp_path):
    teacher = _tiny_network(tmp_path / "t", role="teacher")
    with pytest.raises(ConfigError, match="is a teacher"):
        sidbench.evaluate(generator=teacher, num_images=4, ref="r.npz")


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one of --images and --generator"),
    ({"images": "x", "generator": "y"}, "exactly one of --images and --generator"),
    ({"images": "x", "seed_sets": True}, "--seed-sets needs --generator"),
    ({"images": "x", "seeds": "0-9"}, "--seeds chooses generator seeds"),
    ({"generator": "digits", "seed_sets": True, "num_images": 5}, "--seed-sets takes the protocol's seeds"),
    ({"images": "x", "metrics": "fdi"}, "Did you mean 'fid'"),
])
def test_inconsistent_evaluate_arguments_are_one_line(kwargs, message):
    with pytest.raises(SidbenchError, match=re.escape(message)):
        sidbench.evaluate(**kwargs)


# --- refstats, convert -------------------------------------------------------------------------

def test_refstats_refuses_a_dataset_that_is_not_the_suites(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(folder / f"{i}.png")
    with pytest.raises(DatasetError, match="1,797|1797"):
        sidbench.refstats(folder, suite="digits", out=tmp_path / "r.npz")
    assert not (tmp_path / "r.npz").exists()


def test_refstats_output_must_be_an_npz(tmp_path):
    with pytest.raises(ConfigError, match="must end with .npz"):
        sidbench.refstats(tmp_path, out=tmp_path / "stats.json")


def _tiny_state_dict(tmp_path: Path) -> tuple[Path, Path]:
    import torch

    from sidbench.nets.build import build_network

    torch.manual_seed(0)
    torch.save(build_network(TINY).state_dict(), tmp_path / "net.pt")
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    return tmp_path / "net.pt", tmp_path / "config.json"


def test_convert_records_the_role_and_a_suite_mismatch_writes_nothing(tmp_path):
    pt, config = _tiny_state_dict(tmp_path)
    summary = sidbench.convert(pt, out=tmp_path / "gen", config=config, role="generator", sigma_init=1.5)
    assert summary["record"]["role"] == "generator" and summary["record"]["sigma_init"] == 1.5
    assert summary["parameters"] > 0 and Path(summary["network_json"]).is_file()
    with pytest.raises(AssetError, match="resolution 8 .suite: 16."):
        sidbench.convert(pt, out=tmp_path / "wrong", config=config, suite="digits")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "gen", "net.pt"]


def test_cli_converts_an_edm_pickle_and_prints_its_notes(tmp_path, capsys):
    import torch

    from sidbench.cli import main
    from sidbench.nets.build import build_network
    from tests.nets import _persistence_fixture as fx

    torch.manual_seed(0)
    kwargs = {**TINY["init_kwargs"], "augment_dim": 0, "dropout": 0.0}
    net = build_network({"class_name": "EDMPrecond", "init_kwargs": kwargs})
    pkl = fx.write_edm_pickle(tmp_path / "sid.pkl", net, kwargs, tmp_path / "marker", snapshot="ema")
    assert main(["convert", str(pkl), "--trust-pickle", "-o", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("converted sid.pkl: EDMPrecond/SongUNet") and "\nnote: " in out
    assert not (tmp_path / "marker").exists()  # the pickled source never ran
    assert main(["convert", str(pkl), "--trust-pickle", "--out", str(tmp_path / "g"),
                 "--role", "generator"]) == 0
    assert "role generator" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, message", [
    ({"sigma_init": 2.5}, "add --role generator"),
    ({"role": "generator", "sigma_init": math.nan}, "finite number greater than 0"),
    ({"role": "genrator"}, "Did you mean 'generator'"),
    ({"trust_pickle": True}, "is read as a state dict"),
])
def test_convert_refuses_inconsistent_arguments_before_converting(tmp_path, kwargs, message):
    pt, config = _tiny_state_dict(tmp_path)
    with pytest.raises(SidbenchError, match=re.escape(message)):
        sidbench.convert(pt, out=tmp_path / "o", config=config, **kwargs)
    assert not (tmp_path / "o").exists()


# --- the README's example ----------------------------------------------------------------------

def _readme_api_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "README's Python API section must hold one python example"
    return blocks[0]


@pytest.mark.slow
def test_readme_python_api_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(_readme_api_example(), "README.md", "exec"), {})
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"FD \d+\.\d \(digits-fd, 100 images\)", line), line
    record = json.loads((tmp_path / "runs" / "api-digits.json").read_text())
    fid = record["metrics"]["fid"]
    assert fid["protocol"]["name"] == "digits-fd" and fid["num_images"] == 100 and 0 < fid["value"] < math.inf
