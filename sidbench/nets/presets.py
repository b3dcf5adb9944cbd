"""Configs of EDM's released teachers (config F of EDM's `train.py` and README table).

DDPM++ (`--arch=ddpmpp`): SongUNet, positional embedding, standard encoder/decoder,
channel_mult_noise 1, resample_filter [1,1], 128 channels, [2,2,2] at 32x32
(`--cres=1,2,2,2` at 64x64); `--augment` > 0 adds augment_dim 9. Dropout: 0.13
(CIFAR-10, the default), 0.05 (FFHQ), 0.25 (AFHQv2). ADM (`--arch=adm`): DhariwalUNet,
192 channels, [1,2,3,4], dropout 0.10, `--augment=0` (no augment layer), `--fp16=1`.
All use `--precond=edm` (EDMPrecond) with its defaults sigma_min 0, sigma_max inf,
sigma_data 0.5.
"""

from __future__ import annotations

import copy
from typing import Any

from sidbench.errors import ConfigError
from sidbench.registry import suggest


def _ddpmpp(resolution: int, label_dim: int, dropout: float) -> dict[str, Any]:
    return {
        "class_name": "EDMPrecond",
        "init_kwargs": {
            "img_resolution": resolution, "img_channels": 3, "label_dim": label_dim, "use_fp16": False,
            "sigma_min": 0, "sigma_max": "inf", "sigma_data": 0.5,
            "model_type": "SongUNet", "embedding_type": "positional", "encoder_type": "standard",
            "decoder_type": "standard", "channel_mult_noise": 1, "resample_filter": [1, 1],
            "model_channels": 128, "channel_mult": [2, 2, 2] if resolution == 32 else [1, 2, 2, 2],
            "augment_dim": 9, "dropout": dropout,
        },
    }


PRESETS: dict[str, dict[str, Any]] = {
    "edm-cifar10-uncond": _ddpmpp(32, 0, 0.13),
    "edm-cifar10-cond": _ddpmpp(32, 10, 0.13),
    "edm-ffhq64": _ddpmpp(64, 0, 0.05),
    "edm-afhqv2-64": _ddpmpp(64, 0, 0.25),
    "edm-imagenet64": {
        "class_name": "EDMPrecond",
        "init_kwargs": {
            "img_resolution": 64, "img_channels": 3, "label_dim": 1000, "use_fp16": True,
            "sigma_min": 0, "sigma_max": "inf", "sigma_data": 0.5,
            "model_type": "DhariwalUNet", "model_channels": 192, "channel_mult": [1, 2, 3, 4],
            "dropout": 0.10,
        },
    },
}


def preset_config(name: str) -> dict[str, Any]:
    """A fresh copy of a released teacher's network config, for `build_network`."""
    if name not in PRESETS:
        raise ConfigError(f"unknown network preset '{name}'.{suggest(name, list(PRESETS))}",
                          hint=f"valid: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
