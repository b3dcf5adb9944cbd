"""`sidbench pairs` / `sidbench.generation.pairs`: teacher (noise, image) pairs for DMD, per seed, resumable.

The oracle is written out here: pair i's noise is sigma_max times the latent drawn first from
`torch.Generator().manual_seed(i)` (EDM's per-image seeds), its label the class drawn next, and its
image EDM's Heun sampler run on that latent. Resuming, refusing other settings, hash checks and the
verb's one-line errors are checked on tiny networks.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from sidbench.errors import AssetError, ConfigError
from sidbench.generation import pairs as pairs_mod
from sidbench.generation.pairs import MANIFEST, make_pairs, read_pairs
from sidbench.nets.sampler import edm_sampler
from tests._cli import run_cli
from tests.methods._tiny import IMG, tiny_net

STEPS = 3


@pytest.fixture(scope="module")
def net():
    return tiny_net(0, label_dim=4).requires_grad_(False)


def _oracle(net, seed: int, num_steps: int = STEPS, sigma_max: float = 80.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(IMG, generator=g)
    label = torch.nn.functional.one_hot(torch.randint(4, (1,), generator=g), 4).float()
    image = edm_sampler(net, z[None], label, num_steps=num_steps, sigma_max=sigma_max)
    return (z * sigma_max).float(), image[0].float(), label[0]


def test_pairs_are_edm_seeds_through_heun_and_do_not_depend_on_the_batch(net, tmp_path):
    summary = make_pairs(net, tmp_path / "a", "0-6", num_steps=STEPS, batch_size=3, shard_size=4,
                         progress=False)
    assert (summary.written, summary.skipped, summary.shards, summary.nfe) == (7, 0, 2, 2 * STEPS - 1)
    got = read_pairs(tmp_path / "a")
    assert len(got) == 7 and got.seeds.tolist() == list(range(7)) and got.sigma_max == 80.0
    for i in (0, 4, 6):
        noise, image, label = _oracle(net, i)
        torch.testing.assert_close(got.noise[i], noise, rtol=0, atol=1e-5)
        torch.testing.assert_close(got.image[i], image, rtol=1e-5, atol=1e-5)
        assert torch.equal(got.labels[i], label)
    make_pairs(net, tmp_path / "b", [4, 5, 6], num_steps=STEPS, batch_size=1, shard_size=2, progress=False)
    other = read_pairs(tmp_path / "b")
    assert torch.equal(other.noise, got.noise[4:])  # images: the same up to the batched kernels' rounding
    torch.testing.assert_close(other.image, got.image[4:], rtol=1e-5, atol=1e-5)


def test_the_manifest_records_each_shard_with_its_sha256_and_shards_are_safetensors(net, tmp_path):
    import hashlib

    make_pairs(net, tmp_path / "p", "0-4", num_steps=STEPS, shard_size=2, progress=False,
               network_info={"weights_sha256": "abc"})
    manifest = json.loads((tmp_path / "p" / MANIFEST).read_text())
    assert (manifest["format"], manifest["seeds"], manifest["num_pairs"]) == ("sidbench.pairs", "0-4", 5)
    assert manifest["settings"]["num_steps"] == STEPS and manifest["settings"]["image_shape"] == list(IMG)
    assert manifest["network"]["weights_sha256"] == "abc" and len(manifest["network"]["fingerprint"]) == 64
    assert [s["seeds"] for s in manifest["shards"]] == ["0-1", "2-3", "4"]
    for entry in manifest["shards"]:
        path = tmp_path / "p" / entry["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        tensors = load_file(str(path))
        assert set(tensors) == {"noise", "image", "labels", "seeds"}
        assert tensors["noise"].dtype == torch.float32


def test_a_cut_run_resumes_to_the_same_bytes_without_remaking_finished_shards(net, tmp_path, monkeypatch):
    make_pairs(net, tmp_path / "full", "0-5", num_steps=STEPS, shard_size=2, progress=False)
    real = pairs_mod.heun_pairs
    calls = []

    def dying(*args, **kwargs):
        calls.append(list(args[1]))
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while making the second shard
        return real(*args, **kwargs)

    monkeypatch.setattr(pairs_mod, "heun_pairs", dying)
    with pytest.raises(KeyboardInterrupt):
        make_pairs(net, tmp_path / "cut", "0-5", num_steps=STEPS, shard_size=2, progress=False)
    monkeypatch.setattr(pairs_mod, "heun_pairs", lambda *a, **k: (calls.append(list(a[1])), real(*a, **k))[1])
    calls.clear()
    summary = make_pairs(net, tmp_path / "cut", "0-5", num_steps=STEPS, shard_size=2, progress=False)
    assert (summary.written, summary.skipped) == (4, 2) and calls == [[2, 3], [4, 5]]
    for name in ("shard-00000.safetensors", "shard-00001.safetensors", "shard-00002.safetensors"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "full" / name).read_bytes()
    assert not list((tmp_path / "cut").glob(".*.tmp"))


def test_a_corrupt_shard_is_refused_by_the_reader_and_remade_by_a_rerun(net, tmp_path):
    make_pairs(net, tmp_path / "p", "0-3", num_steps=STEPS, shard_size=2, progress=False)
    good = (tmp_path / "p" / "shard-00001.safetensors").read_bytes()
    (tmp_path / "p" / "shard-00001.safetensors").write_bytes(good[:-8] + b"\0" * 8)
    with pytest.raises(AssetError, match="sha256 does not match"):
        read_pairs(tmp_path / "p")
    summary = make_pairs(net, tmp_path / "p", "0-3", num_steps=STEPS, shard_size=2, progress=False)
    assert (summary.written, summary.skipped) == (2, 2)
    assert (tmp_path / "p" / "shard-00001.safetensors").read_bytes() == good
    assert len(read_pairs(tmp_path / "p")) == 4


def test_other_settings_or_seeds_are_refused_where_pairs_exist(net, tmp_path):
    make_pairs(net, tmp_path / "p", "0-1", num_steps=STEPS, shard_size=2, progress=False)
    with pytest.raises(ConfigError, match="num_steps: 3 -> 4"):
        make_pairs(net, tmp_path / "p", "0-1", num_steps=4, shard_size=2, progress=False)
    with pytest.raises(ConfigError, match="seeds: 0-1 -> 0-2"):
        make_pairs(net, tmp_path / "p", "0-2", num_steps=STEPS, shard_size=2, progress=False)
    with pytest.raises(ConfigError, match="network"):
        make_pairs(tiny_net(1, label_dim=4), tmp_path / "p", "0-1", num_steps=STEPS, shard_size=2,
                   progress=False)


def test_an_unfinished_or_missing_pairs_folder_is_refused(net, tmp_path, monkeypatch):
    with pytest.raises(AssetError, match="no pairs.json"):
        read_pairs(tmp_path)
    monkeypatch.setattr(pairs_mod, "heun_pairs", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        make_pairs(net, tmp_path / "p", "0-3", num_steps=STEPS, shard_size=2, progress=False)
    with pytest.raises(AssetError, match="0 of 4 pairs"):
        read_pairs(tmp_path / "p")


def test_the_verb_makes_the_suites_pairs_and_reruns_as_a_resume(tmp_path, capsys):
    out = tmp_path / "pairs"
    argv = ["pairs", "--suite", "digits", "--num-pairs", "3", "--num-steps", "2", "--out", out]
    rc, stdout, err = run_cli(argv, capsys)
    assert rc == 0, err
    assert "3 pairs written, 0 already done, 1 shards" in stdout
    got = read_pairs(out)
    assert got.image.shape == (3, 1, 16, 16) and got.labels.shape == (3, 10)
    assert got.manifest["network"]["suite"] == "digits" and got.manifest["settings"]["num_steps"] == 2
    again = ["pairs", "--suite", "digits", "--num", "3", "--steps", "2", "--out", out]
    rc, stdout, _ = run_cli(again, capsys)
    assert rc == 0 and "0 pairs written, 3 already done" in stdout


@pytest.mark.parametrize("extra, message", [
    (["--num-pairs", "0"], "--num-pairs 0 must be at least 1"),
    (["--num-pairs", "2", "--shard-size", "0"], "--shard-size 0 must be at least 1"),
    (["--num-pairs", "2", "--sigma-max", "nan"], "sigma_max"),
    (["--num-pairs", "2", "--seeds", "0-3"], "lists 4 seeds but --num is 2"),
])
def test_bad_options_are_one_line(extra, message, tmp_path, capsys):
    rc, _, err = run_cli(["pairs", "--suite", "digits", *extra, "--out", tmp_path / "o"], capsys)
    assert rc == 1 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_a_one_step_generator_is_not_a_teacher(tmp_path, capsys):
    from sidbench.nets.native import save_network

    config = {"class_name": "EDMPrecond", "init_kwargs": {
        "img_resolution": 8, "img_channels": 3, "label_dim": 0, "model_type": "SongUNet", "model_channels": 8,
        "channel_mult": [1], "num_blocks": 1, "attn_resolutions": []}}
    from sidbench.nets.build import build_network

    save_network(build_network(config), config, tmp_path / "g", role="generator", sigma_init=80.0)
    argv = ["pairs", "--network", tmp_path / "g", "--num-pairs", "2", "--out", tmp_path / "o"]
    rc, _, err = run_cli(argv, capsys)
    assert rc == 1 and "is a one-step generator" in err and err.count("\n") == 1, err
