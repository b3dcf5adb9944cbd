"""Native network folders: round trip, integrity checks and atomicity."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from sidbench.errors import AssetError, CheckpointError
from sidbench.fileio import sha256_file
from sidbench.nets.build import build_network
from sidbench.nets.native import load_network, read_network_config, save_network

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
