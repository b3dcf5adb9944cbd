"""`sidbench validate METHOD`: passes for SiD, and fails naming the item for a broken method.

The broken methods are real `Method`s registered for the test: one whose loss is NaN, one that
draws its noise from the global torch RNG (deterministic under the trainer's reseeding, so only
the draws check can catch it), one that returns a loss of the wrong shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from sidbench.cli import main
from sidbench.methods.base import LossOutput, Method, NetworkSpec, Phase, Update
from sidbench.registry import METHODS
from sidbench.workflows.validate import CHECK_NAMES, validate_method


def _generator_loss(ctx, noise: torch.Tensor) -> torch.Tensor:
    """A small regression of G(z) towards the teacher's denoising of it (finite, trains something)."""
    from sidbench.methods.sid import generate_images

    net = ctx.nets["generator"]
    net.train()
    x = generate_images(net, noise, ctx.labels, 2.5)
    with torch.no_grad():
        sigma = torch.full((len(x), 1, 1, 1), 0.5)
        target = ctx.nets["teacher"](x + 0.5 * noise, sigma, ctx.labels)
    return (x - target).square().flatten(1).mean(1)


def _nan_update(ctx):
    loss = _generator_loss(ctx, ctx.draws.randn(*ctx.img_shape))
    return LossOutput(loss * float("nan"), terms={"regression": loss})


def _global_rng_update(ctx):
    noise = torch.randn(ctx.micro_batch, *ctx.img_shape)  # the global RNG, not ctx.draws
    return LossOutput(_generator_loss(ctx, noise))


def _bad_shape_update(ctx):
    return LossOutput(_generator_loss(ctx, ctx.draws.randn(*ctx.img_shape)).mean())


@dataclass(frozen=True)
class _Settings:
    sigma_init: float = 2.5


def _method(name: str, fn) -> Method:
    return Method(name=name, version="0.0.1", paper="(a test)", description="a deliberately broken method",
                  networks=(NetworkSpec("generator", init="teacher", ema=True),), settings=_Settings,
                  updates=(Update("generator", "generator", fn),),
                  phases=lambda s: (Phase("train", ("generator",)),))


BROKEN = {"test-nan-loss": (_nan_update, CHECK_NAMES[2], "non-finite"),
          "test-global-rng": (_global_rng_update, CHECK_NAMES[1], "global torch RNG"),
          "test-bad-shape": (_bad_shape_update, CHECK_NAMES[0], "per_sample of shape (4,)")}


@pytest.fixture
def broken_methods():
    for name, (fn, _, _) in BROKEN.items():
        METHODS.register(name, _method(name, fn), source="tests")
    yield
    for name in BROKEN:
        METHODS._items.pop(name, None)
        METHODS._sources.pop(name, None)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_method_fails_naming_the_item(name, broken_methods, tmp_path):
    _, item, words = BROKEN[name]
    result = validate_method(name, outdir=tmp_path, steps=5, progress=False)
    assert not result.ok
    failed = result.failed
    assert failed.name == item and words in failed.detail, (failed.name, failed.detail)
    before = CHECK_NAMES[:CHECK_NAMES.index(item)]
    assert all(result.check(n).passed for n in before)
    after = [c for c in result.checks if CHECK_NAMES.index(c.name) > CHECK_NAMES.index(item)]
    assert all(c.passed is None and c.detail.startswith("skipped") for c in after)


def test_cli_exits_non_zero_naming_the_failed_item(broken_methods, tmp_path, capsys):
    rc = main(["validate", "test-global-rng", "--steps", "5", "--outdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 1
    assert f"FAILED at '{CHECK_NAMES[1]}'" in out and "ctx.draws" in out


def test_unknown_method_is_one_line_with_a_suggestion(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["validate", "sdi"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Did you mean 'sid'" in err and err.count("\n") == 1


@pytest.mark.slow
def test_sid_passes_every_check(tmp_path):
    result = validate_method("sid", outdir=tmp_path, steps=10, progress=False)
    assert [c.name for c in result.checks] == list(CHECK_NAMES)
    assert result.ok, [(c.name, c.detail) for c in result.checks if not c.passed]
    assert "SIGKILL" in result.check(CHECK_NAMES[4]).detail
    assert "->" in result.check(CHECK_NAMES[6]).detail


def test_an_unknown_set_key_is_a_bad_argument_not_a_failed_check(capsys):
    rc = main(["validate", "sid", "--set", "training.bach=8"])
    err = capsys.readouterr().err
    assert rc == 1 and "Did you mean 'training.batch'" in err and err.count("\n") == 1, err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sida", "dmd", "dmd2", "diff-instruct", "add", "sid-lsg", "ddpm-t2i"])
def test_every_shipped_method_passes_every_check(name, tmp_path):
    """Each shipped method (the baselines through their entry points; the text-to-image ones on digits-t2i)
    passes the author's checklist."""
    import sidbench

    overrides: tuple[str, ...] = ()
    if name == "sida":  # its generator otherwise waits 100 kimg
        overrides = ("method.generator_start_kimg=0", "method.gan_start_kimg=0.1")
    if name == "dmd":  # the regression loss reads teacher pairs; L2 where LPIPS weights are absent
        sidbench.pairs(out=tmp_path / "pairs", suite="digits", num_pairs=64, num_steps=6, progress=False)
        overrides = (f"method_settings.pairs={tmp_path / 'pairs'}", "method_settings.regression_distance=l2")
    result = validate_method(name, outdir=tmp_path / "v", steps=10, overrides=overrides, progress=False)
    assert result.ok, [(c.name, c.detail) for c in result.checks if not c.passed]
