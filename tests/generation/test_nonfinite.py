"""No silent black images: NaN/Inf weights or outputs stop the run with their cause, and reruns recover."""

import json
import math

import numpy as np
import pytest
import torch

from sidbench import images as imgio
from sidbench.errors import CheckpointError, ConfigError, SidbenchError
from sidbench.generation import MANIFEST, generate
from sidbench.nets.render import check_finite_output, nonfinite_weights, render_seeds
from tests.generation._nets import BadOutputOnCall, GaussDenoiser


def run(out, net, seeds="0-5", **kw):
    kw.setdefault("num_steps", 3)
    return generate(net, out, seeds, progress=False, **kw)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nonfinite_parameter_refused_before_work(tmp_path, value):
    net = GaussDenoiser(gain=True)
    with torch.no_grad():
        net.gain.fill_(value)
    with pytest.raises(CheckpointError, match=r"1 NaN/Inf value\(s\) \(first in 'gain'\)"):
        run(tmp_path / "imgs", net)
    assert list(tmp_path.iterdir()) == []


def test_nan_buffer_refused_but_infinite_buffer_allowed():
    assert nonfinite_weights(GaussDenoiser(mean=math.nan)) == (1, "mean")
    net = GaussDenoiser()
    net.register_buffer("mask", torch.tensor([0.0, -math.inf]))  # attention masks legitimately hold -inf
    assert nonfinite_weights(net) == (0, None)


@pytest.mark.parametrize("sampler", ["heun", "onestep"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nonfinite_output_stops_the_run_naming_the_seed(tmp_path, sampler, value):
    """Batch 2 (seeds 2, 3) goes bad in its first network call: batch 1 is kept, nothing black is written."""
    calls_per_batch = 1 if sampler == "onestep" else 2 * 3 - 1
    net = BadOutputOnCall(bad_call=calls_per_batch, value=value, which=1)
    out = tmp_path / "imgs"
    with pytest.raises(SidbenchError, match="first seed 3") as info:
        run(out, net, sampler=sampler, batch_size=2)
    msg = str(info.value)
    assert "NaN/Inf in 1 of 2 images" in msg and "finite weights" in msg and f"{sampler} sampler" in msg
    assert imgio.done_seeds(out) == {0, 1}
    assert json.loads((out / MANIFEST).read_text())["seeds"] == ""  # claims nothing it may not hold
    for seed in (0, 1):  # the kept images are the real ones
        expected = render_seeds(GaussDenoiser(), [seed], sampler, heun={"num_steps": 3})[0]
        assert np.array_equal(imgio.decode_image((out / imgio.seed_filename(seed)).read_bytes()), expected)


def test_rerun_after_crash_with_images_needs_the_same_settings(tmp_path):
    out = tmp_path / "imgs"
    with pytest.raises(SidbenchError, match="NaN/Inf"):
        run(out, BadOutputOnCall(bad_call=1), sampler="onestep", batch_size=2)
    with pytest.raises(ConfigError, match="holds 2 images made with other settings") as info:
        run(out, GaussDenoiser(), sampler="onestep", sigma_init=2.0)
    assert "pass another --out, or delete" in info.value.hint
    # the same settings resume (the planted fault fired once): 4 more images
    assert run(out, GaussDenoiser(), sampler="onestep", batch_size=2).written == 4


@pytest.mark.parametrize("zip_out", [False, True])
def test_crash_before_any_image_does_not_block_the_corrected_rerun(tmp_path, zip_out):
    out = tmp_path / ("imgs.zip" if zip_out else "imgs")
    with pytest.raises(SidbenchError, match="NaN/Inf"):
        run(out, BadOutputOnCall(bad_call=0), sampler="onestep", sigma_init=80.0)
    folder = tmp_path / "imgs.zip.partial" if zip_out else out
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST]  # a manifest-only folder is left
    summary = run(out, GaussDenoiser(), sampler="onestep", sigma_init=2.5)  # other settings: proceeds
    assert summary.written == 6
    assert imgio.load_image_folder(out).shape == (6, 3, 4, 4)


def test_check_finite_output_names_broken_weights():
    net = GaussDenoiser(gain=True)
    with torch.no_grad():
        net.gain.fill_(math.nan)
    x = torch.zeros(3, 3, 4, 4, dtype=torch.float64)
    check_finite_output(x, net, [0, 1, 2], "heun", {})  # finite: no error
    x[2, 0, 0, 0] = math.nan
    with pytest.raises(CheckpointError, match="first seed 12.*weights hold 1 NaN/Inf"):
        check_finite_output(x, net, [10, 11, 12], "heun", {})


def test_render_seeds_refuses_nan_for_the_metrics_path():
    """The metrics' on-the-fly source renders through render_seeds: it must not see black images either."""
    with pytest.raises(SidbenchError, match="NaN/Inf in 1 of 3 images"):
        render_seeds(BadOutputOnCall(bad_call=0, which=2), [0, 1, 2], "onestep")
    with pytest.raises(ConfigError, match="sigma_init"):
        render_seeds(GaussDenoiser(), [0], "onestep", sigma_init=math.nan)
    with pytest.raises(ConfigError, match="sigma_min"):
        render_seeds(GaussDenoiser(), [0], "heun", heun={"sigma_min": 0.0})


def test_manifest_spells_infinity_as_inf_and_never_nan(tmp_path):
    out = tmp_path / "imgs"
    run(out, GaussDenoiser(), seeds="0", S_churn=5.0)  # S_max defaults to inf
    text = (out / MANIFEST).read_text()
    assert '"S_max": "inf"' in text and "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["seeds"] == "0"
