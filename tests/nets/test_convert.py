"""Converting EDM persistence pickles (and plain state dicts) without running their code."""

from __future__ import annotations

import io
import json
import pickle
import sys

import pytest
import torch

from sidbench.cli import main
from sidbench.errors import CheckpointError, ConfigError
from sidbench.fileio import sha256_file
from sidbench.nets.build import build_network
from sidbench.nets.native import load_network
from sidbench.nets.persistence import RestrictedUnpickler, collect_tensors, convert_pickle, read_pickle
from sidbench.nets.state_dict import convert_state_dict

try:  # tests/nets is a package (tests/nets/__init__.py); fall back for rootdir-style imports
    from . import _persistence_fixture as fx
except ImportError:
    import _persistence_fixture as fx


def _kwargs(**over):
    kw = {"img_resolution": 8, "img_channels": 3, "label_dim": 0, "model_type": "SongUNet",
          "model_channels": 16, "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [],
          "augment_dim": 9, "dropout": 0.0}
    return {**kw, **over}


def _net(class_name="EDMPrecond", **over):
    """A tiny real network with every tensor (buffers too) moved off its fresh init."""
    torch.manual_seed(0)
    net = build_network({"class_name": class_name, "init_kwargs": _kwargs(**over)})
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for t in net.state_dict().values():
            t.add_(torch.randn(t.shape, generator=gen) * 0.01)
    return net.eval()


def _outputs(net, label_dim=0):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 3, 8, 8, generator=gen)
    sigma = torch.tensor([0.01, 1.0, 50.0])
    labels = torch.eye(label_dim)[:3] if label_dim else None
    aug = torch.randn(3, 9, generator=gen)
    with torch.no_grad():
        return net(x, sigma, labels, augment_labels=aug)


@pytest.mark.parametrize("class_name,model_type,snapshot,label_dim,protocol", [
    ("EDMPrecond", "SongUNet", True, 0, 4),  # EDM's default pickle protocol
    ("EDMPrecond", "DhariwalUNet", False, 10, 2),
    ("VPPrecond", "SongUNet", True, 0, 5),
])
def test_pickle_converts_to_identical_network(tmp_path, class_name, model_type, snapshot, label_dim,
                                              protocol):
    marker = tmp_path / "marker"
    net = _net(class_name, label_dim=label_dim, model_type=model_type)
    kwargs = _kwargs(label_dim=label_dim, model_type=model_type)
    pkl = fx.write_edm_pickle(tmp_path / "edm.pkl", net, kwargs, marker, snapshot=snapshot, protocol=protocol)
    assert "torch_utils.persistence" not in sys.modules and "dnnlib" not in sys.modules  # no EDM around

    json_path = convert_pickle(pkl, tmp_path / "out", trust_pickle=True)

    assert not marker.exists()  # the embedded module_src never ran
    record = json.loads(json_path.read_text())
    assert record["class_name"] == class_name  # the preconditioner is recorded, not guessed
    assert record["source"]["sha256"] == sha256_file(pkl)
    assert record["source"]["key"] == ("ema" if snapshot else None)
    assert record["source"]["format"] == "edm-persistence"
    torch.manual_seed(99)
    loaded = load_network(json_path)
    assert type(loaded) is type(net)
    assert torch.equal(_outputs(net, label_dim), _outputs(loaded, label_dim))


def test_marker_source_really_creates_the_marker(tmp_path):
    """The check above can fail: executing the embedded source is what would create the marker."""
    marker = tmp_path / "marker"
    exec(fx.marker_source(marker), {})
    assert marker.exists()


def test_collected_names_match_state_dict_and_skip_non_persistent_buffers(tmp_path):
    class Small(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 3)})
            self.register_buffer("kept", torch.ones(2))
            self.register_buffer("scratch", torch.zeros(2), persistent=False)
            self.register_buffer("absent", None)

    small = Small()
    with fx.fake_edm_modules() as persistence:
        data = pickle.dumps(fx.persistent_object(small, {}, "", persistence._reconstruct_persistent_obj))
    path = tmp_path / "small.pkl"
    path.write_bytes(data)
    tensors = collect_tensors(read_pickle(path))
    assert list(tensors) == list(small.state_dict())
    assert all(torch.equal(tensors[k], v) for k, v in small.state_dict().items())


@pytest.mark.parametrize("protocol", [2, 4])
def test_restricted_unpickler_rebuilds_tensors_exactly(protocol):
    gen = torch.Generator().manual_seed(0)
    plain = torch.randn(4, 5, generator=gen)
    view = plain[1:, ::2]  # non-contiguous view into a shared storage
    tagged = torch.randn(3, generator=gen)
    tagged.note = "python attribute state"  # pickled through torch._tensor._rebuild_from_type_v2
    half = torch.randn(6, generator=gen).half()
    param = torch.nn.Parameter(torch.randn(2, 2, generator=gen))
    data = pickle.dumps({"plain": plain, "view": view, "tagged": tagged, "half": half, "param": param},
                        protocol=protocol)
    got = RestrictedUnpickler(io.BytesIO(data)).load()
    for key, ref in [("plain", plain), ("view", view), ("tagged", tagged), ("half", half), ("param", param)]:
        assert got[key].dtype == ref.dtype and torch.equal(got[key], ref.detach()), key


def test_refused_without_trust_flag(tmp_path):
    pkl = fx.write_edm_pickle(tmp_path / "edm.pkl", _net(), _kwargs(), tmp_path / "marker")
    with pytest.raises(CheckpointError, match="can run arbitrary code"):
        convert_pickle(pkl, tmp_path / "out", trust_pickle=False)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_without_trust_flag(tmp_path, capsys):
    pkl = fx.write_edm_pickle(tmp_path / "edm.pkl", _net(), _kwargs(), tmp_path / "marker")
    assert main(["convert", str(pkl), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--trust-pickle" in err
    assert not (tmp_path / "out").exists()


def test_cli_converts_and_summarises(tmp_path, capsys):
    net = _net()
    pkl = fx.write_edm_pickle(tmp_path / "edm.pkl", net, _kwargs(), tmp_path / "marker")
    assert main(["convert", str(pkl), "--trust-pickle", "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    digest = sha256_file(tmp_path / "out" / "network.safetensors")
    n_params = sum(p.numel() for p in net.parameters())
    assert out.count("\n") == 1 and f"{n_params:,} parameters" in out and digest in out
    assert str(tmp_path / "out") in out


def test_disallowed_global_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"ema": fx.Evil(f"touch {marker}")}))
    with pytest.raises(CheckpointError, match=r"global \w+\.system"):
        convert_pickle(path, tmp_path / "out", trust_pickle=True)
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_missing_key_lists_the_keys(tmp_path):
    pkl = fx.write_edm_pickle(tmp_path / "edm.pkl", _net(), _kwargs(), tmp_path / "marker")
    with pytest.raises(ConfigError, match="no key 'G_ema'.*augment_pipe, dataset_kwargs, ema, loss_fn"):
        convert_pickle(pkl, tmp_path / "out", trust_pickle=True, key="G_ema")


def test_tensors_that_do_not_fit_the_recorded_config_are_named(tmp_path):
    # The pickle says 32 channels, but its tensors come from a 16-channel network.
    pkl = fx.write_edm_pickle(tmp_path / "edm.pkl", _net(), _kwargs(model_channels=32), tmp_path / "marker")
    with pytest.raises(CheckpointError, match=r"another shape.*model\.map_layer0\.weight"):
        convert_pickle(pkl, tmp_path / "out", trust_pickle=True)
    assert not (tmp_path / "out" / "network.json").exists()


def test_truncated_pickle_is_a_checkpoint_error(tmp_path):
    pkl = fx.write_edm_pickle(tmp_path / "edm.pkl", _net(), _kwargs(), tmp_path / "marker")
    pkl.write_bytes(pkl.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="cannot be read as a network pickle"):
        convert_pickle(pkl, tmp_path / "out", trust_pickle=True)


def test_preset_mismatch_is_refused(tmp_path):
    pkl = fx.write_edm_pickle(tmp_path / "edm.pkl", _net(), _kwargs(), tmp_path / "marker")
    with pytest.raises(ConfigError, match="not preset 'edm-cifar10-uncond'.*img_resolution=8"):
        convert_pickle(pkl, tmp_path / "out", trust_pickle=True, preset="edm-cifar10-uncond")


def test_state_dict_with_wrapper_prefix_converts(tmp_path, capsys):
    net = _net()
    cfg = {"class_name": "EDMPrecond", "init_kwargs": _kwargs()}
    path = tmp_path / "pytorch_model.bin"
    whole = {f"module.feedforward_model.{k}": v for k, v in net.state_dict().items()}
    whole["module.guidance_model.fake_unet.weight"] = torch.zeros(2)  # DMD2's other network: dropped
    torch.save(whole, path)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    argv = ["convert", str(path), "--config", str(tmp_path / "cfg.json"), "-o", str(tmp_path / "o")]
    assert main(argv) == 0
    assert "parameters" in capsys.readouterr().out
    assert torch.equal(_outputs(net), _outputs(load_network(tmp_path / "o")))
    with pytest.raises(ConfigError, match="--config or --preset"):
        convert_state_dict(path, tmp_path / "o2")
