"""Building blocks of EDM's U-Nets, with EDM's parameter and buffer names.

Names, shapes, initialisation schemes and the order of random draws follow NVIDIA's
EDM release (`training/networks.py`), so converted official weights load with
`load_state_dict(strict=True)` and a fresh network drawn under a given seed matches
EDM's. Every layer casts its weights to the input dtype, which is how EDM runs a
model in fp16 while keeping fp32 master weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn.functional import silu

from sidbench.errors import ConfigError

INIT_MODES = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")


def weight_init(shape: Sequence[int], mode: str, fan_in: int, fan_out: int) -> torch.Tensor:
    """A random tensor of `shape` scaled for the named scheme (EDM's four schemes)."""
    if mode == "xavier_uniform":
        return math.sqrt(6 / (fan_in + fan_out)) * (torch.rand(*shape) * 2 - 1)
    if mode == "xavier_normal":
        return math.sqrt(2 / (fan_in + fan_out)) * torch.randn(*shape)
    if mode == "kaiming_uniform":
        return math.sqrt(3 / fan_in) * (torch.rand(*shape) * 2 - 1)
    if mode == "kaiming_normal":
        return math.sqrt(1 / fan_in) * torch.randn(*shape)
    raise ConfigError(f"unknown init_mode '{mode}'", hint=f"use one of {', '.join(INIT_MODES)}")


class Linear(torch.nn.Module):
    """Fully connected layer; weight [out, in], optional bias [out]."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 init_mode: str = "kaiming_normal", init_weight: float = 1, init_bias: float = 0):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        fans = dict(mode=init_mode, fan_in=in_features, fan_out=out_features)
        self.weight = torch.nn.Parameter(weight_init([out_features, in_features], **fans) * init_weight)
        self.bias = torch.nn.Parameter(weight_init([out_features], **fans) * init_bias) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x @ self.weight.to(x.dtype).t()
        if self.bias is not None:
            x = x.add_(self.bias.to(x.dtype))  # in place: a fresh product; mm's backward keeps no output
        return x


def _resample_kernel(resample_filter: Sequence[float]) -> torch.Tensor:
    """Separable 1-D filter -> normalised 2-D kernel of shape [1, 1, k, k]."""
    f = torch.as_tensor(resample_filter, dtype=torch.float32)
    return torch.outer(f, f)[None, None] / f.sum().square()


class Conv2d(torch.nn.Module):
    """Convolution with optional 2x up/down resampling by a fixed FIR filter.

    `kernel=0` gives a pure resampler (no weight). The filter is the buffer
    `resample_filter`, present only when `up` or `down` (EDM keeps it in the state dict).
    `fused_resample` orders the convolution and resampling as EDM does for NCSN++'s
    residual encoder path.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True,
                 up: bool = False, down: bool = False, resample_filter: Sequence[float] = (1, 1),
                 fused_resample: bool = False, init_mode: str = "kaiming_normal",
                 init_weight: float = 1, init_bias: float = 0):
        if up and down:
            raise ConfigError("Conv2d cannot both upsample and downsample", hint="set only one of up/down")
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.up = up
        self.down = down
        self.fused_resample = fused_resample
        area = kernel * kernel
        fans = dict(mode=init_mode, fan_in=in_channels * area, fan_out=out_channels * area)
        self.weight = None
        self.bias = None
        if kernel:
            w = weight_init([out_channels, in_channels, kernel, kernel], **fans) * init_weight
            self.weight = torch.nn.Parameter(w)
            if bias:
                self.bias = torch.nn.Parameter(weight_init([out_channels], **fans) * init_bias)
        self.register_buffer("resample_filter", _resample_kernel(resample_filter) if up or down else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        F = torch.nn.functional
        w = None if self.weight is None else self.weight.to(x.dtype)
        f = None if self.resample_filter is None else self.resample_filter.to(x.dtype)
        w_pad = 0 if w is None else w.shape[-1] // 2
        f_pad = 0 if f is None else (f.shape[-1] - 1) // 2
        cin, cout = self.in_channels, self.out_channels

        if self.fused_resample and self.up and w is not None:
            x = F.conv_transpose2d(x, (f * 4).tile([cin, 1, 1, 1]), groups=cin, stride=2,
                                   padding=max(f_pad - w_pad, 0))
            x = F.conv2d(x, w, padding=max(w_pad - f_pad, 0))
        elif self.fused_resample and self.down and w is not None:
            x = F.conv2d(x, w, padding=w_pad + f_pad)
            x = F.conv2d(x, f.tile([cout, 1, 1, 1]), groups=cout, stride=2)
        else:
            if self.up:
                x = F.conv_transpose2d(x, (f * 4).tile([cin, 1, 1, 1]), groups=cin, stride=2, padding=f_pad)
            if self.down:
                x = F.conv2d(x, f.tile([cin, 1, 1, 1]), groups=cin, stride=2, padding=f_pad)
            if w is not None:
                x = F.conv2d(x, w, padding=w_pad)
        if self.bias is not None:
            if w is None:
                x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
            else:  # in place on the fresh convolution output (its backward keeps no output): no extra buffer
                x = x.add_(self.bias.to(x.dtype).reshape(1, -1, 1, 1))
        return x


class GroupNorm(torch.nn.Module):
    """Group norm with at most `num_groups` groups and at least 4 channels per group."""

    def __init__(self, num_channels: int, num_groups: int = 32, min_channels_per_group: int = 4,
                 eps: float = 1e-5):
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(num_channels))
        self.bias = torch.nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.group_norm(x, num_groups=self.num_groups, weight=self.weight.to(x.dtype),
                                              bias=self.bias.to(x.dtype), eps=self.eps)


def attention_weights(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """softmax(q^T k / sqrt(c)) over keys, computed in fp32 and returned in q's dtype.

    q, k: [N, C, L]; result [N, Lq, Lk]. fp32 keeps fp16 runs stable, as in EDM.
    """
    k = k / math.sqrt(k.shape[1])  # divide (not multiply by the inverse): EDM's rounding
    w = torch.einsum("ncq,nck->nqk", q.to(torch.float32), k.to(torch.float32))
    return w.softmax(dim=2).to(q.dtype)


class UNetBlock(torch.nn.Module):
    """Residual block with embedding conditioning, optional resampling and self-attention.

    The union of the DDPM++, NCSN++ and ADM block variants, named as in EDM.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, up: bool = False,
                 down: bool = False, attention: bool = False, num_heads: int | None = None,
                 channels_per_head: int = 64, dropout: float = 0, skip_scale: float = 1, eps: float = 1e-5,
                 resample_filter: Sequence[float] = (1, 1), resample_proj: bool = False,
                 adaptive_scale: bool = True, init: dict | None = None, init_zero: dict | None = None,
                 init_attn: dict | None = None):
        super().__init__()
        init = {} if init is None else init
        init_zero = dict(init_weight=0) if init_zero is None else init_zero
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.emb_channels = emb_channels
        if not attention:
            self.num_heads = 0
        else:
            self.num_heads = num_heads if num_heads is not None else out_channels // channels_per_head
        self.dropout = dropout
        self.skip_scale = skip_scale
        self.adaptive_scale = adaptive_scale

        self.norm0 = GroupNorm(num_channels=in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, kernel=3, up=up, down=down,
                            resample_filter=resample_filter, **init)
        self.affine = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1), **init)
        self.norm1 = GroupNorm(num_channels=out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, kernel=3, **init_zero)

        self.skip = None
        if out_channels != in_channels or up or down:
            kernel = 1 if resample_proj or out_channels != in_channels else 0
            self.skip = Conv2d(in_channels, out_channels, kernel=kernel, up=up, down=down,
                               resample_filter=resample_filter, **init)

        if self.num_heads:
            self.norm2 = GroupNorm(num_channels=out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, out_channels * 3, kernel=1,
                              **(init_attn if init_attn is not None else init))
            self.proj = Conv2d(out_channels, out_channels, kernel=1, **init_zero)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        orig = x
        x = self.conv0(silu(self.norm0(x)))

        params = self.affine(emb)[:, :, None, None].to(x.dtype)
        if self.adaptive_scale:
            scale, shift = params.chunk(chunks=2, dim=1)
            x = silu(torch.addcmul(shift, self.norm1(x), scale + 1))
        else:
            x = silu(self.norm1(x + params))

        x = self.conv1(torch.nn.functional.dropout(x, p=self.dropout, training=self.training))
        x = x.add_(self.skip(orig) if self.skip is not None else orig)  # conv1's fresh output, as EDM
        x = x * self.skip_scale

        if self.num_heads:
            # qkv channels are laid out [head, channel, (q,k,v)], as in EDM's weights.
            b, c = x.shape[0], x.shape[1]
            qkv = self.qkv(self.norm2(x)).reshape(b * self.num_heads, c // self.num_heads, 3, -1)
            q, k, v = qkv.unbind(2)
            w = attention_weights(q, k)
            a = torch.einsum("nqk,nck->ncq", w, v)
            x = self.proj(a.reshape(*x.shape)) + x
            x = x * self.skip_scale
        return x


class PositionalEmbedding(torch.nn.Module):
    """Sinusoidal embedding [cos | sin] of a scalar per sample (DDPM++, ADM); no parameters."""

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = False):
        super().__init__()
        self.num_channels = num_channels
        self.max_positions = max_positions
        self.endpoint = endpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        steps = half - (1 if self.endpoint else 0)
        freqs = torch.arange(half, dtype=torch.float32, device=x.device) / steps
        freqs = (1 / self.max_positions) ** freqs
        x = torch.outer(x, freqs.to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


class FourierEmbedding(torch.nn.Module):
    """Random Fourier features [cos | sin] (NCSN++); frequencies are the buffer `freqs`."""

    def __init__(self, num_channels: int, scale: float = 16):
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.outer(x, (2 * math.pi * self.freqs).to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)
