"""The example plugin (examples/sidbench-example-method) adds a method without touching sidbench.

Fast: its entry point, read from its own pyproject.toml, is registered in-process through a
dist-info on sys.path; `ls` lists it with its distribution; its recipe dry-runs; its pure functions
match formulas written out here (a Gaussian-data denoiser, whose ODE has a closed form); two
deliberately broken copies of it (a loss that turns NaN, noise from an unseeded generator) make
`sidbench validate` exit non-zero naming the failing item. Slow: the package is pip-installed
into a temporary venv and `sidbench validate` passes there, run by that venv's interpreter.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sidbench.cli import main
from sidbench.errors import ConfigError
from sidbench.registry import METHODS
from sidbench.workflows.validate import CHECK_NAMES
from tests._plugin_dists import drop_modules_under, fresh_registry, on_path, write_dist

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "sidbench-example-method"
RECIPE = EXAMPLE / "recipes" / "example-kd-digits.yaml"


def _declared() -> tuple[str, str, dict[str, dict[str, str]]]:
    """(name, version, entry points) as the example's pyproject.toml declares them."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    return project["name"], project["version"], project["entry-points"]


@pytest.fixture
def example(tmp_path, monkeypatch):
    """The example package as if pip had installed it: its dist-info and its source on sys.path."""
    name, version, eps = _declared()
    site = tmp_path / "site"
    write_dist(site, name, version, eps)
    on_path(monkeypatch, site, EXAMPLE)
    fresh_registry(monkeypatch, METHODS)
    yield site
    drop_modules_under(EXAMPLE)


def test_the_example_declares_one_method_through_the_entry_point_group():
    name, version, eps = _declared()
    assert name == "sidbench-example-method" and eps == {"sidbench.methods": {"example-kd":
                                                                               "sidbench_example_method.kd:METHOD"}}
    for path in (ROOT / "sidbench").rglob("*.py"):  # sidbench's core never imports it
        assert "sidbench_example_method" not in path.read_text(), path


def test_the_example_is_listed_with_its_distribution(example, capsys, monkeypatch):
    from sidbench_example_method import kd

    import sidbench

    assert METHODS.get("example-kd") is kd.METHOD
    row = next(r for r in sidbench.ls("methods")["methods"] if r["name"] == "example-kd")
    assert row["broken"] is None and row["version"] == "0.1.0"
    assert row["distribution"] == "sidbench-example-method 0.1.0" and "arXiv:2101.02388" in row["paper"]
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["ls", "methods"]) == 0
    assert "sidbench-example-method 0.1.0" in capsys.readouterr().out


def test_the_example_recipe_resolves_and_dry_runs(example, tmp_path, capsys):
    from sidbench.train.config import load_recipe

    config = load_recipe(RECIPE)
    assert config.method == "example-kd" and config.method_settings.num_steps == 8
    assert main(["distill", str(RECIPE), "--outdir", str(tmp_path / "run"), "--dry-run"]) == 0
    assert "nothing trained" in capsys.readouterr().out
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_settings_are_checked_by_name(example):
    from sidbench_example_method import kd

    with pytest.raises(ConfigError, match="'num_steps' = 1 is outside"):
        kd.METHOD.make_settings({"num_steps": 1})
    with pytest.raises(ConfigError, match="Did you mean 'num_steps'"):
        kd.METHOD.make_settings({"num_step": 8})
    assert kd.METHOD.make_settings({}).sigma_init == 80.0


# ------------------------------------------------------------------ the pure functions ----

class _Recorder(torch.nn.Module):
    """Returns its input and remembers its arguments; `augment` gives it EDM's augment layer."""

    def __init__(self, augment: int = 0):
        super().__init__()
        if augment:
            self.model = torch.nn.Module()
            self.model.map_augment = torch.nn.Linear(augment, 4, bias=False)
        self.calls: list[tuple] = []

    def forward(self, x, sigma, labels=None, augment_labels=None):
        self.calls.append((x, sigma, labels, augment_labels))
        return x


def test_generate_images_is_the_generator_at_sigma_init(example):
    from sidbench_example_method.kd import generate_images

    z = torch.randn(3, 1, 4, 4)
    labels = torch.eye(10)[:3]
    for augment in (0, 9):
        net = _Recorder(augment)
        out = generate_images(net, z, labels, 7.0)
        x, sigma, got_labels, aug = net.calls[-1]
        assert torch.equal(out, 7.0 * z) and torch.equal(x, 7.0 * z) and got_labels is labels
        assert sigma.shape == (3, 1, 1, 1) and torch.all(sigma == 7.0)
        assert (aug is None) if not augment else torch.equal(aug, torch.zeros(3, 9))


def test_generator_loss_is_the_squared_distance_with_no_gradient_into_the_target(example):
    from sidbench_example_method.kd import generator_loss

    x = torch.randn(4, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    target = torch.randn(4, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    loss = generator_loss(x, target)
    expected = torch.stack([sum((x[i] - target[i]).flatten() ** 2) for i in range(4)])
    assert loss.shape == (4,) and torch.allclose(loss, expected, rtol=1e-12)
    loss.sum().backward()
    assert torch.allclose(x.grad, 2 * (x - target).detach(), rtol=1e-12) and target.grad is None


class _GaussianDenoiser(torch.nn.Module):
    """The exact denoiser of data N(0, s^2): D(x, sigma) = x s^2 / (sigma^2 + s^2)."""

    sigma_min, sigma_max = 0.0, math.inf

    def __init__(self, s: float):
        super().__init__()
        self.s = s

    def round_sigma(self, sigma):
        return torch.as_tensor(sigma)

    def forward(self, x, sigma, labels=None, augment_labels=None):
        sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, *([1] * (x.ndim - 1)))
        return x * self.s ** 2 / (sigma ** 2 + self.s ** 2)


def test_teacher_images_follow_the_probability_flow_ode(example):
    """For data N(0, s^2) the ODE from x_T = T z to sigma 0 ends at T z s / sqrt(T^2 + s^2); Heun is
    second order: doubling the steps divides the error by about 4."""
    from sidbench_example_method.kd import teacher_images

    s, T = 0.5, 80.0
    z = torch.randn(5, 1, 4, 4, dtype=torch.float64)
    exact = T * z * s / math.sqrt(T ** 2 + s ** 2)
    net = _GaussianDenoiser(s)
    err = {n: float((teacher_images(net, z, None, n, sigma_max=T) - exact).abs().max() / exact.abs().max())
           for n in (32, 64)}
    assert err[64] < 5e-3 and 3.5 < err[32] / err[64] < 4.6, err
    assert teacher_images(net, z.float(), None, 4).dtype == torch.float32  # the latents' dtype


# ------------------------------------------------------------- deliberately broken plugins ----

BROKEN = '''
"""Two deliberately broken copies of the example method (tests/test_example_method.py)."""
import dataclasses

import torch

from sidbench.methods.base import LossOutput, Update
from sidbench_example_method import kd


def nan_update(ctx):
    """The example's update, NaN from step 2 on (as a loss that divides by a vanishing norm turns)."""
    out = kd.generator_update(ctx)
    if ctx.step >= 2:
        nan = float("nan")
        out = LossOutput(out.per_sample * nan, {k: v * nan for k, v in out.terms.items()}, out.scale)
    return out


def unseeded_update(ctx):
    """The example's update with z from a generator seeded by the OS: the global RNG is untouched,
    but no two runs see the same noise."""
    s = ctx.settings
    g = torch.Generator()
    g.seed()
    z = torch.randn((ctx.micro_batch, *ctx.img_shape), generator=g)
    labels = ctx.labels if ctx.label_dim else None
    ctx.nets["teacher"].eval()
    target = kd.teacher_images(ctx.nets["teacher"], z, labels, s.num_steps, s.sigma_min, s.sigma_max, s.rho)
    ctx.nets["generator"].train()
    loss = kd.generator_loss(kd.generate_images(ctx.nets["generator"], z, labels, s.sigma_init), target)
    return LossOutput(loss, terms={"kd": loss}, scale=s.loss_scale)


NAN = dataclasses.replace(kd.METHOD, name="broken-kd-nan",
                          updates=(Update("generator", "generator", nan_update),))
UNSEEDED = dataclasses.replace(kd.METHOD, name="broken-kd-unseeded",
                               updates=(Update("generator", "generator", unseeded_update),))
'''

BROKEN_ITEMS = {"broken-kd-nan": (CHECK_NAMES[2], "skipped as non-finite"),
                "broken-kd-unseeded": (CHECK_NAMES[3], "second run vs first run")}


@pytest.fixture
def broken(example):
    write_dist(example, "sidbench-broken-examples", "0.0.1",
               {"sidbench.methods": {"broken-kd-nan": "broken_kd:NAN",
                                     "broken-kd-unseeded": "broken_kd:UNSEEDED"}},
               modules={"broken_kd": BROKEN})
    yield
    drop_modules_under(example)


@pytest.mark.parametrize("name", sorted(BROKEN_ITEMS))
def test_validate_fails_a_broken_plugin_naming_the_item(name, broken, tmp_path, capsys):
    item, words = BROKEN_ITEMS[name]
    assert METHODS.get(name).name == name and METHODS.source(name) == "sidbench-broken-examples"
    # Two Heun steps per target keep the test short; the checks are the same.
    rc = main(["validate", name, "--steps", "5", "--outdir", str(tmp_path / "v"),
               "--set", "method_settings.num_steps=2"])
    out = " ".join(capsys.readouterr().out.split())  # the table wraps: compare whitespace-free text
    assert rc == 1
    assert f"validate {name}: FAILED at '{item}'" in out and words in out, out
    for earlier in CHECK_NAMES[:CHECK_NAMES.index(item)]:
        assert f"PASS │ {earlier}" in out
    for later in CHECK_NAMES[CHECK_NAMES.index(item) + 1:]:
        assert f"SKIP │ {later}" in out


# -------------------------------------------------------------------------- installed for real ----

@pytest.mark.slow
def test_pip_installed_example_passes_validate(tmp_path):
    """pip-installs the package (a copy: the build writes egg-info next to its source) into a fresh venv
    that sees this environment's packages, and runs `python -m sidbench validate` with that interpreter."""
    import site as site_module

    copy = tmp_path / "src"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    parents = [p for p in site_module.getsitepackages() if Path(p).is_dir()]
    # addsitedir (not a bare path line) so the parent's own .pth files, e.g. sidbench's editable install, run.
    Path(purelib, "_parent_env.pth").write_text(f"import site; list(map(site.addsitedir, {parents!r}))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", COLUMNS="250", SIDBENCH_NO_PROGRESS="1")
    install = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                              "--no-index", "-q", "-e", str(copy)], env=env, capture_output=True, text=True,
                             cwd=tmp_path)
    assert install.returncode == 0, install.stderr[-2000:]
    listed = subprocess.run([python, "-m", "sidbench", "ls", "methods"], env=env, capture_output=True,
                            text=True, cwd=tmp_path)
    assert listed.returncode == 0 and "sidbench-example-method 0.1.0" in listed.stdout, listed.stderr[-2000:]
    run = subprocess.run([python, "-m", "sidbench", "validate", "example-kd", "--steps", "10"], env=env,
                         capture_output=True, text=True, cwd=tmp_path, timeout=900)
    out = " ".join(run.stdout.split())
    assert run.returncode == 0 and "validate example-kd: every check passed" in out, (out, run.stderr[-2000:])
