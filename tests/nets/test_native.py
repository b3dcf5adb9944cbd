"""Native network folders: round trip, integrity checks and atomicity."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from sidbench.errors import AssetError, CheckpointError, ConfigError
from sidbench.fileio import sha256_file
from sidbench.nets.build import build_network
from sidbench.nets.native import (
    load_network,
    read_network_config,
    read_network_record,
    read_safetensors_header,
    save_network,
)
from tests.nets._build_spy import record_build_devices

CONFIG = {
    "class_name": "EDMPrecond",
    "init_kwargs": {
        "img_resolution": 8, "img_channels": 3, "label_dim": 0, "use_fp16": False,
        "sigma_min": 0, "sigma_max": math.inf, "sigma_data": 0.5,
        "model_type": "SongUNet", "model_channels": 16, "channel_mult": [1, 2], "num_blocks": 1,
        "attn_resolutions": [], "augment_dim": 0, "dropout": 0.0,
    },
}


def _net(seed: int = 0) -> torch.nn.Module:
    """A tiny SongUNet whose tensors (buffers included) are all perturbed away from a fresh init."""
    torch.manual_seed(seed)
    net = build_network(CONFIG)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for t in net.state_dict().values():
            t.add_(torch.randn(t.shape, generator=gen) * 0.01)
    return net.eval()


def _io():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, 8, 8, generator=gen), torch.tensor([0.3, 4.0])


@pytest.fixture
def saved(tmp_path):
    net = _net()
    json_path = save_network(net, CONFIG, tmp_path / "net", source={"file": "x.pkl"})
    return net, json_path


def test_round_trip_is_bit_identical(saved):
    net, json_path = saved
    torch.manual_seed(123)  # the loaded net's own init differs: its weights must come from the file
    loaded = load_network(json_path.parent)
    assert not loaded.training
    x, sigma = _io()
    with torch.no_grad():
        assert torch.equal(net(x, sigma), loaded(x, sigma))
    ref = net.state_dict()
    got = loaded.state_dict()
    assert list(ref) == list(got)
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_files_follow_the_contract(saved):
    net, json_path = saved
    record = json.loads(json_path.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    assert record["format"] == "sidbench.network" and record["format_version"] == 1
    assert record["weights_file"] == "network.safetensors"
    weights = json_path.parent / "network.safetensors"
    assert record["weights_sha256"] == sha256_file(weights)
    assert record["init_kwargs"]["sigma_max"] == "inf"
    assert record["source"] == {"file": "x.pkl"}
    tensors = load_file(str(weights))
    assert set(tensors) == set(net.state_dict())  # parameters AND buffers
    assert any(k.endswith("resample_filter") for k in tensors)
    expected = {"class_name": "EDMPrecond", "init_kwargs": record["init_kwargs"]}
    assert read_network_config(json_path) == expected


def test_json_path_and_folder_both_load(saved):
    _, json_path = saved
    a, b = load_network(json_path), load_network(json_path.parent)
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    assert all(torch.equal(u, v) for u, v in pairs)


def test_modified_weights_are_refused(saved):
    _, json_path = saved
    weights = json_path.parent / "network.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt or modified"):
        load_network(json_path)


def test_truncated_weights_are_a_checkpoint_error(saved):
    _, json_path = saved
    weights = json_path.parent / "network.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    record = json.loads(json_path.read_text())
    record["weights_sha256"] = sha256_file(weights)  # get past the digest check to the reader itself
    json_path.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="cannot be read as safetensors"):
        load_network(json_path)


def test_wrong_architecture_lists_mismatched_names(saved):
    _, json_path = saved
    record = json.loads(json_path.read_text())
    record["init_kwargs"].update(model_channels=32, num_blocks=2)
    json_path.write_text(json.dumps(record))
    with pytest.raises(CheckpointError) as info:
        load_network(json_path)
    msg = str(info.value)
    assert "missing" in msg and "another shape" in msg
    assert "model.enc.8x8_block1" in msg  # a block that only num_blocks=2 has
    assert "model.map_layer0.weight" in msg  # same name, other shape (64 vs 128 wide)
    built = set(build_network({k: record[k] for k in ("class_name", "init_kwargs")}).state_dict())
    saved_names = set(load_file(str(json_path.parent / "network.safetensors")))
    assert f"{len(built - saved_names)} missing" in msg


def test_missing_files_are_asset_errors(saved, tmp_path):
    _, json_path = saved
    with pytest.raises(AssetError, match="no network found"):
        load_network(tmp_path / "nowhere")
    (json_path.parent / "network.safetensors").unlink()
    with pytest.raises(AssetError, match="is missing"):
        load_network(json_path)


def test_interrupted_save_leaves_no_valid_folder(saved, monkeypatch):
    net, json_path = saved
    folder = json_path.parent

    def failing_save(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_network(net, CONFIG, folder)  # overwriting a valid folder
    assert not (folder / "network.json").exists()
    assert not any(p.name.endswith(".tmp") for p in folder.iterdir())
    with pytest.raises(AssetError):
        load_network(folder)


# --- role, sigma_init, notes ---------------------------------------------------------------------------

def test_role_fields_are_written_and_read(tmp_path):
    net = _net()
    gen = save_network(net, CONFIG, tmp_path / "g", role="generator", notes=["from a test"])
    record = json.loads(gen.read_text())
    assert (record["role"], record["sigma_init"], record["notes"]) == ("generator", 2.5, ["from a test"])
    assert read_network_record(gen)["sigma_init"] == 2.5
    assert read_network_record(save_network(net, CONFIG, tmp_path / "g2", role="generator",
                                            sigma_init=0.8))["sigma_init"] == 0.8
    plain = read_network_record(save_network(net, CONFIG, tmp_path / "n"))
    assert (plain["role"], plain["sigma_init"], plain["notes"]) == ("network", None, [])


def test_files_without_role_fields_read_as_network(saved):
    _, json_path = saved
    record = json.loads(json_path.read_text())
    for key in ("role", "sigma_init", "notes"):
        del record[key]
    json_path.write_text(json.dumps(record))
    got = read_network_record(json_path)
    assert (got["role"], got["sigma_init"], got["notes"]) == ("network", None, [])
    load_network(json_path)


@pytest.mark.parametrize("options,match", [
    (dict(role="student"), "unknown role"),
    (dict(sigma_init=2.5), "one-step generator"),
    (dict(role="generator", sigma_init=float("nan")), "finite number > 0"),
    (dict(role="generator", sigma_init=0.0), "finite number > 0"),
    (dict(notes="not a list"), "list of strings"),
    (dict(notes=[1]), "list of strings"),
])
def test_save_refuses_bad_role_fields(tmp_path, options, match):
    with pytest.raises(ConfigError, match=match):
        save_network(_net(), CONFIG, tmp_path / "x", **options)
    assert not (tmp_path / "x" / "network.json").exists()


def test_save_refuses_values_json_cannot_hold(tmp_path):
    bad = {"class_name": "EDMPrecond",
           "init_kwargs": {**CONFIG["init_kwargs"], "channel_mult": torch.ones(2)}}
    with pytest.raises(ConfigError, match=r"config.channel_mult holds a Tensor"):
        save_network(_net(), bad, tmp_path / "x")
    with pytest.raises(ConfigError, match=r"source.when holds a object"):
        save_network(_net(), CONFIG, tmp_path / "x", source={"when": object()})


# --- malformed network.json: one clear error each ---------------------------------------------------------

def _edit(json_path, change):
    record = json.loads(json_path.read_text())
    change(record)
    json_path.write_text(json.dumps(record))


def _set(key, value):
    return lambda r: r.update({key: value})


def _kw(key, value):
    return lambda r: r["init_kwargs"].update({key: value})


MALFORMED = {
    "not-json": (lambda p: p.write_text("{ not json"), CheckpointError, "not valid JSON"),
    "truncated": (lambda p: p.write_text(p.read_text()[:40]), CheckpointError, "not valid JSON"),
    "not-utf8": (lambda p: p.write_bytes(b"\xff\xfe{}"), CheckpointError, "not valid JSON"),
    "bare-nan": (lambda p: p.write_text(p.read_text().replace('"sigma_data": 0.5', '"sigma_data": NaN')),
                 CheckpointError, "bare NaN"),
    "bare-inf": (lambda p: p.write_text(p.read_text().replace('"inf"', "Infinity")), CheckpointError,
                 "bare Infinity"),
    "a-list": (lambda p: p.write_text("[1, 2]"), CheckpointError, "not a sidbench network file"),
    "no-format": (lambda p: _edit(p, lambda r: r.pop("format")), CheckpointError, "not a sidbench network"),
    "version-string": (lambda p: _edit(p, _set("format_version", "1")), CheckpointError, "format_version"),
    "version-bool": (lambda p: _edit(p, _set("format_version", True)), CheckpointError, "format_version"),
    "version-future": (lambda p: _edit(p, _set("format_version", 99)), CheckpointError, "upgrade"),
    "no-class": (lambda p: _edit(p, lambda r: r.pop("class_name")), CheckpointError, "lacks the field"),
    "no-weights-digest": (lambda p: _edit(p, lambda r: r.pop("weights_sha256")), CheckpointError, "lacks"),
    "class-int": (lambda p: _edit(p, _set("class_name", 3)), CheckpointError, "class_name is a int"),
    "kwargs-list": (lambda p: _edit(p, _set("init_kwargs", [])), CheckpointError, "init_kwargs is a list"),
    "weights-file-int": (lambda p: _edit(p, _set("weights_file", 1)), CheckpointError, "weights_file is a"),
    "weights-file-path": (lambda p: _edit(p, _set("weights_file", "../network.safetensors")), CheckpointError,
                          "must be a file name"),
    "digest-not-hex": (lambda p: _edit(p, _set("weights_sha256", "xyz")), CheckpointError, "not a sha256"),
    "source-list": (lambda p: _edit(p, _set("source", [1])), CheckpointError, "source is not an object"),
    "role-unknown": (lambda p: _edit(p, _set("role", "student")), CheckpointError, "unknown role"),
    "role-list": (lambda p: _edit(p, _set("role", ["generator"])), CheckpointError, "unknown role"),
    "sigma-init-nan": (lambda p: _edit(p, lambda r: r.update(role="generator", sigma_init="nan")),
                       CheckpointError, "finite number > 0"),
    "sigma-init-negative": (lambda p: _edit(p, lambda r: r.update(role="generator", sigma_init=-1)),
                            CheckpointError, "finite number > 0"),
    "sigma-init-teacher": (lambda p: _edit(p, lambda r: r.update(role="teacher", sigma_init=2.5)),
                           CheckpointError, "not of a teacher"),
    "notes-string": (lambda p: _edit(p, _set("notes", "x")), CheckpointError, "list of strings"),
    "unknown-class": (lambda p: _edit(p, _set("class_name", "EDMPrecnd")), ConfigError,
                      "Did you mean 'EDMPrecond'"),
    "unknown-model": (lambda p: _edit(p, _kw("model_type", "SongNet")), ConfigError, "SongUNet"),
    "unknown-setting": (lambda p: _edit(p, _kw("chanel_mult", [1, 2])), ConfigError, "channel_mult"),
    "missing-resolution": (lambda p: _edit(p, lambda r: r["init_kwargs"].pop("img_resolution")), ConfigError,
                           "img_resolution"),
    "sigma-data-nan": (lambda p: _edit(p, _kw("sigma_data", "nan")), ConfigError, r"\['sigma_data'\] is NaN"),
    "sigma-data-negative": (lambda p: _edit(p, _kw("sigma_data", -0.5)), ConfigError, "must be a number > 0"),
    "sigma-min-inf": (lambda p: _edit(p, _kw("sigma_min", "inf")), ConfigError, "only sigma_max may be inf"),
    "dropout-nan": (lambda p: _edit(p, _kw("dropout", "nan")), ConfigError, "NaN"),
    "dropout-above-1": (lambda p: _edit(p, _kw("dropout", 1.5)), ConfigError, "probability"),
    "channels-float": (lambda p: _edit(p, _kw("model_channels", 16.0)), ConfigError, "must be an integer"),
    "channels-bool": (lambda p: _edit(p, _kw("model_channels", True)), ConfigError, "must be an integer"),
    "channels-string": (lambda p: _edit(p, _kw("model_channels", "16")), ConfigError, "must be an integer"),
    "channels-negative": (lambda p: _edit(p, _kw("model_channels", -16)), ConfigError, "must be an integer"),
    "blocks-huge": (lambda p: _edit(p, _kw("num_blocks", 10**9)), ConfigError, "from 0 to 256"),
    "mult-not-list": (lambda p: _edit(p, _kw("channel_mult", 2)), ConfigError, "list of at most"),
    "mult-long": (lambda p: _edit(p, _kw("channel_mult", [1] * 1000)), ConfigError, "list of at most"),
    "mult-nan": (lambda p: _edit(p, _kw("channel_mult", [1, "nan"])), ConfigError, "NaN"),
    "fp16-string": (lambda p: _edit(p, _kw("use_fp16", "yes")), ConfigError, "true or false"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_network_json_is_one_clear_error(saved, case, monkeypatch):
    _, json_path = saved
    spoil, error, match = MALFORMED[case]
    spoil(json_path)
    devices = _builds(monkeypatch)
    with pytest.raises(error, match=match) as info:
        load_network(json_path)
    assert "\n" not in str(info.value)
    assert set(devices) <= {"meta"}  # nothing was allocated from the spoiled file


def test_malformed_role_fields_also_fail_in_read_network_record(saved):
    _, json_path = saved
    _edit(json_path, _set("role", "student"))
    with pytest.raises(CheckpointError, match="unknown role"):
        read_network_record(json_path)


# --- shapes and memory are checked before the network is allocated ------------------------------------

_builds = record_build_devices


def test_header_shapes_are_those_of_the_file(saved):
    _, json_path = saved
    weights = json_path.parent / "network.safetensors"
    assert read_safetensors_header(weights) == {k: tuple(v.shape) for k, v in load_file(str(weights)).items()}


@pytest.mark.parametrize("channels", [4096, 2**20])
def test_oversized_architecture_is_refused_before_allocation(saved, monkeypatch, channels):
    """The issue's case: `model_channels: 4096` with 16-channel weights (2**20 would need petabytes)."""
    _, json_path = saved
    _edit(json_path, _kw("model_channels", channels))
    devices = _builds(monkeypatch)
    with pytest.raises(CheckpointError, match=r"another shape \(stored vs built\): model\.map_layer0\.w"):
        load_network(json_path)
    assert devices == ["meta"]


def test_network_that_cannot_fit_in_memory_is_refused_with_the_estimate(saved, monkeypatch):
    import sidbench.nets.native as native

    net, json_path = saved
    monkeypatch.setattr(native, "available_memory", lambda device: 100 << 10)
    devices = _builds(monkeypatch)
    values = sum(t.numel() for t in net.state_dict().values())
    need = f"{values * 8 / 2**20:.3g} MiB"  # two float32 copies: the file's tensors and the network
    with pytest.raises(CheckpointError, match=rf"{values:,} tensor values; building it needs about {need} of "
                                              r"cpu memory, but 100 KiB is available"):
        load_network(json_path)
    assert devices == ["meta"]
    monkeypatch.setattr(native, "available_memory", lambda device: None)  # unknown: not refused
    load_network(json_path)


def _reheader(weights, header: dict, data: bytes):
    raw = json.dumps(header).encode()
    weights.write_bytes(len(raw).to_bytes(8, "little") + raw + data)


def _parts(weights):
    blob = weights.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def _first(header):
    return next(k for k in header if k != "__metadata__")


CORRUPT = {
    "empty": lambda w: w.write_bytes(b""),
    "short": lambda w: w.write_bytes(b"\x01\x02"),
    "header-too-long": lambda w: w.write_bytes((10**12).to_bytes(8, "little") + b"{}"),
    "header-not-json": lambda w: w.write_bytes((5).to_bytes(8, "little") + b"{nope"),
    "header-list": lambda w: _reheader(w, [1], b""),
    "extra-bytes": lambda w: w.write_bytes(w.read_bytes() + b"\0" * 16),
    "truncated-data": lambda w: w.write_bytes(w.read_bytes()[:-4]),
    "bad-dtype": lambda w: (lambda h, d: (h[_first(h)].update(dtype="F33"), _reheader(w, h, d)))(*_parts(w)),
    "bad-shape": lambda w: (lambda h, d: (h[_first(h)].update(shape=[-1]), _reheader(w, h, d)))(*_parts(w)),
    "overlap": lambda w: (lambda h, d: ([h[k].update(data_offsets=[0, h[k]["data_offsets"][1] -
                                                                   h[k]["data_offsets"][0]])
                                         for k in h if k != "__metadata__"], _reheader(w, h, d)))(*_parts(w)),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_weights_header_is_a_clear_error(saved, monkeypatch, case):
    _, json_path = saved
    weights = json_path.parent / "network.safetensors"
    CORRUPT[case](weights)
    _edit(json_path, _set("weights_sha256", sha256_file(weights)))  # past the digest, to the reader
    devices = _builds(monkeypatch)
    with pytest.raises(CheckpointError, match="cannot be read as safetensors") as info:
        load_network(json_path)
    assert "\n" not in str(info.value) and devices in ([], ["meta"])
