"""The multi-step student sampler (ADD-style) against a hand-written loop; student_sigmas in network.json;
`generate` / `evaluate` with --student-steps, and the one-step paths left as they were."""

from __future__ import annotations

import json

import pytest
import torch

import sidbench
from sidbench.errors import CheckpointError, ConfigError
from sidbench.generation.multistep import multistep_generate, pick_levels, render_multistep
from sidbench.nets.native import read_network_record, save_network
from sidbench.nets.render import render_seeds
from sidbench.nets.sampler import onestep_generate
from sidbench.nets.seeds import latents_and_labels
from tests.methods._tiny import tiny_net

LEVELS = (80.0, 4.08, 1.61, 0.693)
TINY_CONFIG = {"class_name": "EDMPrecond", "init_kwargs": dict(
    img_resolution=8, img_channels=3, label_dim=0, model_type="SongUNet", model_channels=16,
    channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4], augment_dim=9, dropout=0.0)}


def hand_loop(net, seeds, levels, label_dim=0):
    """The sampler written out per image: the seed's generator draws z [C,H,W], its class (conditional),
    then one eps [C,H,W] per re-noising step; x = G(s0 z, s0), then x = G(x + s_k eps_k, s_k)."""
    out = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn([3, 8, 8], generator=g)
        label = None
        if label_dim:
            label = torch.eye(label_dim)[torch.randint(label_dim, size=[], generator=g)][None]
        x = net(z[None].double() * levels[0], torch.tensor([levels[0]]), label,
                augment_labels=torch.zeros(1, 9)).double()
        for s in levels[1:]:
            eps = torch.randn([3, 8, 8], generator=g)
            x = net(x + s * eps[None].double(), torch.tensor([s]), label,
                    augment_labels=torch.zeros(1, 9)).double()
        out.append(x[0])
    return torch.stack(out)


@pytest.mark.parametrize("label_dim", [0, 10])
def test_sampler_equals_the_hand_written_loop(label_dim):
    net = tiny_net(3, label_dim)
    seeds = [0, 5, 17]
    latents, labels, rng = latents_and_labels(seeds, [3, 8, 8], label_dim)
    ours = multistep_generate(net, latents, labels, LEVELS, rng)
    torch.testing.assert_close(ours, hand_loop(net, seeds, LEVELS, label_dim), rtol=1e-6, atol=1e-6)


def test_one_step_is_the_one_step_sampler_and_each_image_depends_on_its_seed_alone():
    net = tiny_net(3)
    seeds = [3, 4, 9, 10]
    latents, labels, rng = latents_and_labels(seeds, [3, 8, 8], 0)
    assert torch.equal(multistep_generate(net, latents, labels, LEVELS[:1], rng),
                       onestep_generate(net, latents, labels, sigma_init=LEVELS[0]))
    together = render_multistep(net, seeds, "cpu", None, LEVELS)
    apart = [render_multistep(net, [s], "cpu", None, LEVELS)[0] for s in seeds]
    assert (together == torch.stack([torch.from_numpy(a) for a in apart]).numpy()).all()
    assert (render_multistep(net, seeds, "cpu", None, LEVELS[:1]) ==
            render_seeds(net, seeds, "onestep", "cpu", sigma_init=LEVELS[0])).all()
    assert not (together == render_seeds(net, seeds, "onestep", "cpu", sigma_init=LEVELS[0])).all()


def test_pick_levels_spreads_the_steps_over_the_recorded_levels():
    assert pick_levels(LEVELS, 1) == (80.0,)
    assert pick_levels(LEVELS, 2) == (80.0, 0.693)
    assert pick_levels(LEVELS, 3) == (80.0, 1.61, 0.693)  # round(1.5) -> 2, half up
    assert pick_levels(LEVELS, 4) == LEVELS
    for bad, match in ((0, "whole number >= 1"), (True, "whole number"), (5, "more steps than the 4")):
        with pytest.raises(ConfigError, match=match):
            pick_levels(LEVELS, bad)
    for levels, match in (([80, 80], "decrease strictly"), ([80, -1], "finite number > 0"), ([], "non-empty"),
                          ("80", "non-empty list"), ([80, float("nan")], "finite number > 0")):
        with pytest.raises(ConfigError, match=match):
            pick_levels(levels, 1)


# --- network.json ----------------------------------------------------------------------------------------

def _student(folder, **record):
    torch.manual_seed(0)
    net = tiny_net(3)
    save_network(net, TINY_CONFIG, folder, **{"role": "generator", **record})
    return folder


def test_student_sigmas_are_recorded_with_sigma_init_the_first_level(tmp_path):
    record = read_network_record(_student(tmp_path / "s", student_sigmas=list(LEVELS)))
    assert record["student_sigmas"] == list(LEVELS) and record["sigma_init"] == 80.0
    plain = read_network_record(_student(tmp_path / "p", sigma_init=2.5))
    assert plain["student_sigmas"] is None
    assert "student_sigmas" not in json.loads((tmp_path / "p" / "network.json").read_text())  # file unchanged
    for kw, match in ((dict(role="teacher", student_sigmas=[1.0]), "not of a teacher"),
                      (dict(sigma_init=2.5, student_sigmas=[80.0, 1.0]), "sigma_init is 2.5"),
                      (dict(student_sigmas=[1.0, 2.0]), "decrease strictly")):
        with pytest.raises(ConfigError, match=match):
            _student(tmp_path / "bad", **kw)


def test_a_network_json_with_bad_student_sigmas_is_refused(tmp_path):
    folder = _student(tmp_path / "s", student_sigmas=list(LEVELS))
    path = folder / "network.json"
    record = json.loads(path.read_text())
    record["student_sigmas"] = [80.0, "x"]
    path.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="student_sigmas holds 'x'"):
        read_network_record(folder)


# --- the verbs --------------------------------------------------------------------------------------------

def test_generate_samples_a_student_at_four_steps_and_records_it(tmp_path):
    folder = _student(tmp_path / "s", student_sigmas=list(LEVELS))
    summary = sidbench.generate(network=folder, num_images=3, out=tmp_path / "g4", student_steps=4,
                                progress=False)
    assert summary.written == 3 and summary.nfe == 4
    manifest = json.loads((tmp_path / "g4" / "generate.json").read_text())
    assert manifest["settings"]["student_sigmas"] == list(LEVELS)
    from sidbench.images import decode_image

    net = tiny_net(3)
    want = render_multistep(net, [0, 1, 2], "cpu", None, LEVELS)
    got = [decode_image((tmp_path / "g4" / f"00000{i}.png").read_bytes()) for i in range(3)]
    assert all((g == w).all() for g, w in zip(got, want, strict=True))
    # the same folder refuses images made at another number of steps
    with pytest.raises(ConfigError, match="student_sigmas"):
        sidbench.generate(network=folder, num_images=3, out=tmp_path / "g4", student_steps=2, progress=False)
    one = sidbench.generate(network=folder, num_images=2, out=tmp_path / "g1", progress=False)
    assert one.nfe == 1
    assert "student_sigmas" not in json.loads((tmp_path / "g1" / "generate.json").read_text())["settings"]


def test_student_steps_is_refused_where_it_has_no_meaning(tmp_path):
    plain = _student(tmp_path / "p", sigma_init=2.5)
    student = _student(tmp_path / "s", student_sigmas=list(LEVELS))
    cases = ((dict(network=plain, student_steps=2), "records no student_sigmas"),
             (dict(network=student, student_steps=2, sigma_init=80.0), "--sigma-init and --student-steps"),
             (dict(network=student, student_steps=2, sampler="heun"), "not the heun sampler"),
             (dict(network=student, student_steps=9), "more steps than the 4"),
             (dict(network=student, student_steps=0), "--student-steps 0 must be at least 1"))
    for kw, match in cases:
        with pytest.raises(ConfigError, match=match):
            sidbench.generate(num_images=1, out=tmp_path / "o", progress=False, **kw)
    assert not (tmp_path / "o").exists()
    with pytest.raises(ConfigError, match="--student-steps needs --generator"):
        sidbench.evaluate(images=tmp_path, ref="r.npz", student_steps=4)


def test_eval_generator_renders_at_the_chosen_steps(monkeypatch, tmp_path):
    import sidbench.metrics.evaluate as ev

    student = _student(tmp_path / "s", student_sigmas=list(LEVELS))
    seen = {}

    def stand_in(source, *args, **kwargs):
        seen["info"], seen["images"] = source.describe(), source.render([0, 1])
        raise RuntimeError("captured")

    monkeypatch.setattr(ev, "evaluate", stand_in)
    with pytest.raises(RuntimeError, match="captured"):
        sidbench.evaluate(generator=student, num_images=2, ref="r.npz", student_steps=4)
    assert seen["info"]["student_sigmas"] == list(LEVELS)
    want = render_multistep(tiny_net(3), [0, 1], "cpu", None, LEVELS)
    assert torch.equal(seen["images"], torch.from_numpy(want))
    with pytest.raises(RuntimeError, match="captured"):
        sidbench.evaluate(generator=student, num_images=2, ref="r.npz")
    assert "student_sigmas" not in seen["info"]
    assert torch.equal(seen["images"], torch.from_numpy(render_seeds(tiny_net(3), [0, 1], "onestep",
                                                                      sigma_init=80.0)))


def test_cli_student_steps(tmp_path, capsys):
    from sidbench.cli import main

    student = _student(tmp_path / "s", student_sigmas=list(LEVELS))
    assert main(["generate", "--network", str(student), "--num-images", "2", "--student-steps", "2",
                 "--out", str(tmp_path / "g")]) == 0
    assert "2 images written" in capsys.readouterr().out
    settings = json.loads((tmp_path / "g" / "generate.json").read_text())["settings"]
    assert settings["student_sigmas"] == [80.0, 0.693]
