"""EDM's architectures: exact sizes, EDM's names, layer maths against closed forms.

Parameter counts are the released teachers' (spec, methods.md); names are those of
NVIDIA's EDM `training/networks.py`, which the official state dicts use.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sidbench.errors import ConfigError
from sidbench.nets import build_network, preset_config
from sidbench.nets.dhariwal import DhariwalUNet
from sidbench.nets.layers import Conv2d, GroupNorm, Linear, PositionalEmbedding, UNetBlock, weight_init
from sidbench.nets.songunet import SongUNet


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def filter_keys(net: torch.nn.Module) -> list[str]:
    return [k for k in net.state_dict() if k.endswith("resample_filter")]


def build_meta(name: str) -> torch.nn.Module:
    """Shapes and names without the cost of random initialisation (counts are the same)."""
    with torch.device("meta"):
        return build_network(preset_config(name))


@pytest.fixture(scope="module")
def cifar_uncond():
    torch.manual_seed(0)
    return build_network(preset_config("edm-cifar10-uncond")).eval()


# --- released configurations -------------------------------------------------------------------

def test_cifar10_uncond_size_and_names(cifar_uncond):
    net = cifar_uncond
    assert n_params(net) == 55_733_891
    keys = net.state_dict().keys()
    assert len(filter_keys(net)) == 8
    for key in ("model.map_augment.weight", "model.map_layer0.weight", "model.map_layer1.bias",
                "model.enc.32x32_conv.weight", "model.enc.16x16_down.conv0.resample_filter",
                "model.enc.16x16_down.skip.weight", "model.enc.16x16_block0.affine.weight",
                "model.enc.16x16_block0.qkv.weight", "model.enc.16x16_block0.norm2.weight",
                "model.dec.8x8_in0.qkv.weight", "model.dec.8x8_in0.proj.bias",
                "model.dec.8x8_in1.conv1.weight",
                "model.dec.8x8_block4.skip.weight", "model.dec.32x32_up.skip.resample_filter",
                "model.dec.16x16_block4.qkv.weight", "model.dec.32x32_aux_norm.weight",
                "model.dec.32x32_aux_conv.weight"):
        assert key in keys, key
    # Absent in EDM: no bias on map_augment, no label map when unconditional, no buffer for the
    # positional embedding, attention only at 16x16 in the encoder blocks (plus the 8x8 in0 block).
    for key in ("model.map_augment.bias", "model.map_label.weight", "model.map_noise.freqs",
                "model.enc.32x32_block0.qkv.weight", "model.enc.8x8_block0.qkv.weight",
                "model.dec.8x8_in1.qkv.weight", "model.dec.16x16_block3.qkv.weight"):
        assert key not in keys, key
    assert net.model.map_augment.in_features == 9
    # The 2-tap [1,1] filter as a normalised 2x2 kernel.
    f = net.state_dict()["model.enc.8x8_down.conv0.resample_filter"]
    assert torch.equal(f, torch.full([1, 1, 2, 2], 0.25))


def test_cifar10_uncond_tiny_forward(cifar_uncond):
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        out = cifar_uncond(x, torch.tensor([2.0]), augment_labels=torch.zeros(1, 9))
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_cifar10_cond_size():
    net = build_meta("edm-cifar10-cond")
    assert n_params(net) == 55_735_299
    assert len(filter_keys(net)) == 8
    assert tuple(net.state_dict()["model.map_label.weight"].shape) == (128, 10)
    assert "model.map_label.bias" in net.state_dict()


@pytest.mark.parametrize("name", ["edm-ffhq64", "edm-afhqv2-64"])
def test_ffhq_afhq_size(name):
    net = build_meta(name)
    assert n_params(net) == 61_805_571
    assert len(filter_keys(net)) == 12
    keys = net.state_dict().keys()
    assert "model.enc.64x64_conv.weight" in keys and "model.dec.64x64_aux_conv.weight" in keys
    assert "model.enc.8x8_block3.conv1.weight" in keys


def test_preset_dropouts_are_edms():
    expect = {"edm-cifar10-uncond": 0.13, "edm-cifar10-cond": 0.13, "edm-ffhq64": 0.05,
              "edm-afhqv2-64": 0.25, "edm-imagenet64": 0.10}
    for name, p in expect.items():
        assert preset_config(name)["init_kwargs"]["dropout"] == p


def test_imagenet64_adm_size_and_names():
    net = build_meta("edm-imagenet64")
    assert n_params(net) == 295_899_267
    assert len(filter_keys(net)) == 12
    sd = net.state_dict()
    assert tuple(sd["model.map_label.weight"].shape) == (768, 1000)
    for key in ("model.map_label.bias", "model.map_augment.weight", "model.dec.64x64_aux_conv.weight"):
        assert key not in sd, key
    for key in ("model.enc.64x64_conv.weight", "model.enc.32x32_block0.qkv.weight",
                "model.enc.8x8_block2.norm2.bias", "model.dec.8x8_in0.qkv.weight",
                "model.dec.64x64_block3.conv1.weight",
                "model.out_norm.weight", "model.out_conv.bias", "model.enc.32x32_down.conv0.resample_filter"):
        assert key in sd, key
    assert "model.enc.64x64_block0.qkv.weight" not in sd  # no attention at 64x64
    assert net.model.enc["8x8_block0"].num_heads == 768 // 64


def test_ncsnpp_names_and_filter():
    net = SongUNet(16, 3, 3, model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8],
                   embedding_type="fourier", channel_mult_noise=2, encoder_type="residual",
                   resample_filter=[1, 3, 3, 1])
    sd = net.state_dict()
    assert tuple(sd["map_noise.freqs"].shape) == (16,)  # noise channels 32 -> 16 frequencies
    assert "enc.8x8_aux_residual.weight" in sd and "enc.8x8_aux_residual.resample_filter" in sd
    f = torch.tensor([1.0, 3, 3, 1])
    assert torch.allclose(sd["enc.8x8_down.conv0.resample_filter"][0, 0], torch.outer(f, f) / 64)


def test_bad_architecture_choice_suggests():
    with pytest.raises(ConfigError, match="positional"):
        SongUNet(16, 3, 3, embedding_type="positionl")


# --- layer maths ---------------------------------------------------------------------------------

def test_downsample_is_average_pool_and_upsample_is_nearest():
    x = torch.randn(2, 3, 8, 8)
    down = Conv2d(3, 3, kernel=0, down=True)
    up = Conv2d(3, 3, kernel=0, up=True)
    assert torch.allclose(down(x), F.avg_pool2d(x, 2), atol=1e-6)
    assert torch.allclose(up(x), F.interpolate(x, scale_factor=2, mode="nearest"), atol=1e-6)


def test_conv_matches_torch_conv():
    conv = Conv2d(4, 5, kernel=3, init_bias=1)
    x = torch.randn(2, 4, 6, 6)
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1), atol=1e-5)


def test_groupnorm_groups_and_maths():
    assert GroupNorm(64).num_groups == 16 and GroupNorm(256).num_groups == 32
    gn = GroupNorm(8, eps=1e-6)
    x = torch.randn(2, 8, 3, 3)
    ref = torch.nn.GroupNorm(2, 8, eps=1e-6)
    assert torch.allclose(gn(x), ref(x), atol=1e-5)


def test_positional_embedding_closed_form():
    t = torch.tensor([0.5, 3.0])
    emb = PositionalEmbedding(4, endpoint=False)(t)
    freqs = [1.0, 0.01]  # (1/10000)^(i/2), i = 0, 1
    ref = torch.tensor([[math.cos(v * f) for f in freqs] + [math.sin(v * f) for f in freqs]
                        for v in t.tolist()])
    assert torch.allclose(emb, ref, atol=1e-6)
    emb_end = PositionalEmbedding(4, endpoint=True)(t)  # (1/10000)^(i/1): last frequency 1e-4
    assert math.isclose(emb_end[1, 1].item(), math.cos(3.0 * 1e-4), rel_tol=1e-6)


def test_attention_block_matches_sdpa():
    torch.manual_seed(0)
    block = UNetBlock(8, 8, emb_channels=4, attention=True, num_heads=2, adaptive_scale=False, init_zero={})
    x, emb = torch.randn(2, 8, 4, 4), torch.randn(2, 4)
    hooked = {}
    block.proj.register_forward_hook(lambda m, i, o: hooked.update(inp=i[0]))
    with torch.no_grad():
        block(x, emb)
        h = block.conv0(F.silu(block.norm0(x)))
        h = F.silu(block.norm1(h + block.affine(emb)[:, :, None, None]))
        h = block.conv1(h) + x
        qkv = block.qkv(block.norm2(h)).reshape(2 * 2, 4, 3, 16)  # [batch*head, channel, qkv, position]
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))  # [N, L, C]
        a = F.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(hooked["inp"], a.transpose(1, 2).reshape(2, 8, 4, 4), atol=1e-5)


def test_weight_init_schemes():
    torch.manual_seed(0)
    fan_in, fan_out = 300, 500
    w = weight_init([fan_out, fan_in], "xavier_uniform", fan_in, fan_out)
    assert w.abs().max() <= math.sqrt(6 / (fan_in + fan_out))
    assert w.abs().max() > 0.95 * math.sqrt(6 / (fan_in + fan_out))
    w = weight_init([fan_out, fan_in], "kaiming_normal", fan_in, fan_out)
    assert abs(w.std().item() / math.sqrt(1 / fan_in) - 1) < 0.02
    lin = Linear(fan_in, 7, init_mode="kaiming_uniform", init_weight=0, init_bias=0)
    assert lin.weight.abs().max() == 0 and lin.bias.abs().max() == 0
    with pytest.raises(ConfigError, match="init_mode"):
        weight_init([2], "he_normal", 1, 1)


def test_adm_block_uses_adaptive_scale():
    net = DhariwalUNet(16, 3, 3, model_channels=32, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8])
    block = net.enc["16x16_block0"]
    assert block.adaptive_scale and block.affine.out_features == 2 * block.out_channels
    assert net.enc["8x8_block0"].num_heads == 1  # 64 channels / 64 per head
    assert net.out_conv.weight.abs().max() == 0  # ADM's zero-initialised output layer
