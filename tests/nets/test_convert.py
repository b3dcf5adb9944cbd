"""Converting EDM persistence pickles (and plain state dicts) without running their code."""

from __future__ import annotations

import io
import json
import math
import pickle
import sys

import numpy as np
import pytest
import torch

from sidbench.cli import main
from sidbench.errors import CheckpointError, ConfigError
from sidbench.fileio import sha256_file
from sidbench.nets.build import build_network
from sidbench.nets.native import load_network, read_network_record
from sidbench.nets.persistence import (
    Record,
    RestrictedUnpickler,
    collect_tensors,
    convert_pickle,
    read_pickle,
)
from sidbench.nets.state_dict import convert_state_dict
from tests.nets._build_spy import record_build_devices

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


# --- numpy scalars, as in every released EDM / SiD / SiDA pickle ---------------------------------------

def _records(node, prefix=""):
    """Every persistent Record under `node`, by dotted module name."""
    out = {prefix.rstrip("."): node} if isinstance(node, Record) else {}
    for name, child in (node.state.get("_modules") or {}).items():
        if child is not None:
            out.update(_records(child, f"{prefix}{name}."))
    return out


def _python(value):
    if isinstance(value, dict):
        return {k: _python(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_python(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def _no_numpy(value) -> bool:
    if isinstance(value, dict):
        return all(_no_numpy(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_numpy(v) for v in value)
    return not isinstance(value, np.generic)


@pytest.mark.parametrize("numpy_module", [fx.NUMPY1, fx.NUMPY2])
@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("model_type", ["SongUNet", "DhariwalUNet"])
def test_numpy_scalars_in_state_and_init_kwargs_convert_with_values_kept(tmp_path, numpy_module, protocol,
                                                                         model_type):
    marker = tmp_path / "marker"
    net = _net(model_type=model_type, label_dim=10)
    kwargs = _kwargs(model_type=model_type, label_dim=10, dropout=np.float64(0.13))  # numpy at the top too
    pkl = fx.write_edm_pickle(tmp_path / "edm.pkl", net, kwargs, marker, protocol=protocol,
                              numpy_module=numpy_module)
    assert numpy_module.encode() in pkl.read_bytes()
    other = fx.NUMPY2 if numpy_module == fx.NUMPY1 else fx.NUMPY1
    assert other.encode() not in pkl.read_bytes()

    blocks = {k: r for k, r in _records(read_pickle(pkl)["ema"]).items() if "skip_scale" in r.state}
    assert blocks, "the fixture must put numpy scalars in the UNet blocks"
    for name, block in blocks.items():
        module = net.get_submodule(name)
        assert block.state["skip_scale"] == module.skip_scale, name
        assert type(block.state["skip_scale"]) is type(module.skip_scale), name  # float stays float
        pickled = fx.edm_block_kwargs(module)
        assert block.init_kwargs == _python(pickled), name  # numpy float64 -> the same Python float
        assert _no_numpy(block.init_kwargs) and not _no_numpy(pickled)

    json_path = convert_pickle(pkl, tmp_path / "out", trust_pickle=True)
    assert not marker.exists()
    record = json.loads(json_path.read_text())
    assert record["init_kwargs"]["dropout"] == 0.13
    assert {k: v for k, v in record["init_kwargs"].items() if k != "dropout"} == {
        k: v for k, v in _kwargs(model_type=model_type, label_dim=10).items() if k != "dropout"}
    loaded = load_network(json_path)
    ref, got = net.state_dict(), loaded.state_dict()
    assert list(got) == list(ref) and all(torch.equal(got[k], ref[k]) for k in ref)  # every name and value
    assert torch.equal(_outputs(net, 10), _outputs(loaded, 10))


@pytest.mark.parametrize("value", [np.float64(np.sqrt(0.5)), np.float32(-1.25), np.float16(3.5),
                                   np.int64(-2**40), np.int8(-7), np.uint8(200), np.uint64(2**63 + 5),
                                   np.bool_(True), np.float64("inf")])
def test_real_numpy_scalars_become_python_numbers(value):
    """Pickled by the installed numpy itself, whichever module name it writes."""
    got = RestrictedUnpickler(io.BytesIO(pickle.dumps({"v": value}, protocol=4))).load()["v"]
    assert type(got) is type(value.item()) and got == value.item()


@pytest.mark.parametrize("spec", [">f8", "<f8", "=f4", "|b1", ">i2"])
def test_numpy_scalar_byte_orders(spec):
    dtype = np.dtype(spec)
    raw = np.array(-6.5 if dtype.kind == "f" else 3, dtype=dtype)
    data = fx.dumps(fx.numpy_scalar_reduction(dtype, raw.tobytes()), protocol=4, numpy_module=fx.NUMPY1)
    assert RestrictedUnpickler(io.BytesIO(data)).load() == raw.item()


@pytest.mark.parametrize("make,match", [
    (lambda: np.zeros(3), r"global numpy\.(_core|core)\.multiarray\._reconstruct"),  # an array
    (lambda: np.array([1, "a"], dtype=object), r"global numpy\.(_core|core)\.multiarray\._reconstruct"),
    (lambda: fx.numpy_scalar_reduction(np.dtype("O"), b"\0" * 8), "numpy dtype 'O8'"),
    (lambda: fx.numpy_scalar_reduction(np.dtype("U3"), b"\0" * 12), "numpy dtype 'U3'"),
    (lambda: fx.numpy_scalar_reduction(np.dtype("c16"), b"\0" * 16), "numpy dtype 'c16'"),
    (lambda: fx.numpy_scalar_reduction(np.dtype("M8[s]"), b"\0" * 8), "numpy dtype 'M8'"),
    (lambda: fx.numpy_scalar_reduction(np.dtype([("a", "f8")]), b"\0" * 8), "numpy dtype 'V8'"),
    (lambda: fx.numpy_scalar_reduction(np.dtype("f8"), b"\0" * 3), "not 8 bytes"),
    (lambda: fx.numpy_scalar_reduction(np.dtype("f8"), "not bytes"), "not 8 bytes"),
    (lambda: fx.numpy_scalar_reduction(fx.Evil("true"), b"\0" * 8), r"global \w+\.system"),
])
def test_numpy_objects_beyond_plain_scalars_are_refused(tmp_path, make, match):
    path = tmp_path / "x.pkl"
    path.write_bytes(fx.dumps({"ema": make()}, protocol=4, numpy_module=fx.NUMPY1))
    with pytest.raises(CheckpointError, match=match):
        read_pickle(path)


# --- SiD / SiDA generators and the recorded role -----------------------------------------------------

@pytest.mark.parametrize("model_type", ["SongUNet", "DhariwalUNet"])
def test_sida_classes_convert_to_ours_with_original_names_recorded(tmp_path, model_type):
    net = _net(model_type=model_type)
    kwargs = _kwargs(model_type=f"{model_type}_EncoderDecoder")  # what SiDA's sida_train.py records
    pkl = fx.write_edm_pickle(tmp_path / "sida.pkl", net, kwargs, tmp_path / "marker", snapshot="ema",
                              class_name="EDMPrecond_EncoderDecoder")
    json_path = convert_pickle(pkl, tmp_path / "out", trust_pickle=True, role="generator")
    record = read_network_record(json_path)
    assert record["class_name"] == "EDMPrecond" and record["init_kwargs"]["model_type"] == model_type
    assert record["source"]["class_name"] == "EDMPrecond_EncoderDecoder"
    assert record["source"]["model_type"] == f"{model_type}_EncoderDecoder"
    assert record["role"] == "generator" and record["sigma_init"] == 2.5 and record["notes"] == []
    assert torch.equal(_outputs(net), _outputs(load_network(json_path)))


def test_ema_only_snapshot_without_role_gets_a_note(tmp_path):
    pkl = fx.write_edm_pickle(tmp_path / "sid.pkl", _net(), _kwargs(), tmp_path / "marker", snapshot="ema")
    record = read_network_record(convert_pickle(pkl, tmp_path / "a", trust_pickle=True))
    assert record["role"] == "network" and record["sigma_init"] is None
    assert len(record["notes"]) == 1 and "generator" in record["notes"][0] and "--role" in record["notes"][0]
    # An EDM training snapshot (loss_fn, augment_pipe, dataset_kwargs next to ema) is not one.
    teacher = fx.write_edm_pickle(tmp_path / "edm.pkl", _net(), _kwargs(), tmp_path / "marker")
    assert read_network_record(convert_pickle(teacher, tmp_path / "b", trust_pickle=True))["notes"] == []
    record = read_network_record(convert_pickle(pkl, tmp_path / "c", trust_pickle=True, role="generator",
                                                sigma_init=1.75))
    assert record["notes"] == [] and record["sigma_init"] == 1.75


def test_teacher_role_is_recorded(tmp_path):
    pkl = fx.write_edm_pickle(tmp_path / "edm.pkl", _net(), _kwargs(), tmp_path / "marker")
    record = read_network_record(convert_pickle(pkl, tmp_path / "o", trust_pickle=True, role="teacher"))
    assert record["role"] == "teacher" and record["sigma_init"] is None


BAD_ROLES = [
    (dict(role="gen"), "unknown role 'gen'"),
    (dict(role="Generator"), "unknown role"),
    (dict(sigma_init=2.5), "sigma_init is the noise level of a one-step generator"),
    (dict(role="teacher", sigma_init=2.5), "not of a teacher"),
    (dict(role="generator", sigma_init=0), "finite number > 0"),
    (dict(role="generator", sigma_init=-2.5), "finite number > 0"),
    (dict(role="generator", sigma_init=math.nan), "finite number > 0"),
    (dict(role="generator", sigma_init=math.inf), "finite number > 0"),
    (dict(role="generator", sigma_init="2.5"), "not a number"),
    (dict(role="generator", sigma_init=True), "not a number"),
]


@pytest.mark.parametrize("options,match", BAD_ROLES)
def test_bad_role_or_sigma_init_is_refused_before_reading(tmp_path, options, match):
    missing = tmp_path / "never-read.pkl"
    with pytest.raises(ConfigError, match=match):
        convert_pickle(missing, tmp_path / "o", trust_pickle=True, **options)
    with pytest.raises(ConfigError, match=match):
        convert_state_dict(missing, tmp_path / "o", preset="edm-cifar10-uncond", **options)
    assert not (tmp_path / "o").exists()


def test_state_dict_records_the_role(tmp_path):
    net = _net()
    torch.save(net.state_dict(), tmp_path / "g.pt")
    cfg = {"class_name": "EDMPrecond", "init_kwargs": _kwargs()}
    record = read_network_record(convert_state_dict(tmp_path / "g.pt", tmp_path / "o", config=cfg,
                                                    role="generator", sigma_init=2.0))
    assert record["role"] == "generator" and record["sigma_init"] == 2.0


# --- what the pickle's config claims is checked before anything is allocated -----------------------

def test_unknown_pickled_class_is_named(tmp_path):
    pkl = fx.write_edm_pickle(tmp_path / "edm2.pkl", _net(), _kwargs(), tmp_path / "marker",
                              class_name="EDM_2_Precond_EncoderDecoder")
    with pytest.raises(CheckpointError, match="EDM_2_Precond_EncoderDecoder, which sidbench cannot rebuild"):
        convert_pickle(pkl, tmp_path / "out", trust_pickle=True)


_only_meta_builds = record_build_devices


def test_huge_claimed_architecture_is_refused_without_allocating(tmp_path, monkeypatch):
    # 2**20 channels would need petabytes; the tensors come from a 16-channel network.
    pkl = fx.write_edm_pickle(tmp_path / "edm.pkl", _net(), _kwargs(model_channels=2**20), tmp_path / "m")
    devices = _only_meta_builds(monkeypatch)
    with pytest.raises(CheckpointError, match=r"another shape.*model\.map_layer0\.weight"):
        convert_pickle(pkl, tmp_path / "out", trust_pickle=True)
    assert devices == ["meta"]


def test_network_larger_than_memory_is_refused_with_the_estimate(tmp_path, monkeypatch):
    import sidbench.nets.native as native

    net = _net()
    pkl = fx.write_edm_pickle(tmp_path / "edm.pkl", net, _kwargs(), tmp_path / "m")
    monkeypatch.setattr(native, "available_memory", lambda device: 1000)
    values = sum(t.numel() for t in net.state_dict().values())
    with pytest.raises(CheckpointError, match=f"{values:,} tensor values.*KiB of cpu memory, but 1000 bytes"):
        convert_pickle(pkl, tmp_path / "out", trust_pickle=True)
    torch.save(net.state_dict(), tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match="tensor values"):
        convert_state_dict(tmp_path / "g.pt", tmp_path / "o", config={"class_name": "EDMPrecond",
                                                                       "init_kwargs": _kwargs()})


def test_state_dict_against_a_huge_config_is_refused_without_allocating(tmp_path, monkeypatch):
    torch.save(_net().state_dict(), tmp_path / "g.pt")
    devices = _only_meta_builds(monkeypatch)
    cfg = {"class_name": "EDMPrecond", "init_kwargs": _kwargs(model_channels=4096)}
    with pytest.raises(CheckpointError, match=r"g\.pt does not match.*another shape"):
        convert_state_dict(tmp_path / "g.pt", tmp_path / "o", config=cfg)
    assert devices == ["meta"]


@pytest.mark.parametrize("text,match", [
    ('{"class_name": "EDMPrecond", "init_kwargs": {"sigma_data": NaN}}', "bare NaN"),
    ("{oops", "not valid JSON"),
    ("[1]", "does not hold a JSON object"),
    ('{"class_name": "EDMPrecond", "init_kwargs": {"img_resolution": 8, "img_channels": 3, '
     '"model_channels": "nan"}}', r"\['model_channels'\] is NaN"),
    ('{"class_name": "EDMPrecond", "init_kwargs": {"img_resolution": 8, "img_channels": 3, '
     '"model_channels": 8.5}}', "must be an integer"),
])
def test_bad_config_file_for_a_state_dict(tmp_path, text, match):
    torch.save(_net().state_dict(), tmp_path / "g.pt")
    (tmp_path / "cfg.json").write_text(text)
    with pytest.raises(ConfigError, match=match):
        convert_state_dict(tmp_path / "g.pt", tmp_path / "o", config=tmp_path / "cfg.json")
