"""A tiny random Stable-Diffusion-1.5-style diffusers folder, built offline (not a test module).

The folder has SD 1.5's layout and file names: model_index.json naming a StableDiffusionPipeline,
a UNet2DConditionModel, an AutoencoderKL, a CLIPTextModel with a CLIPTokenizer (a 56-token vocab with
two BPE merges, so "cat" is one token), and SD 1.5's own scheduler config (a PNDMScheduler entry with
the scaled-linear 0.00085..0.012 1000-step betas; sidbench reads it as a DDPMScheduler). Weights are
safetensors written by save_pretrained. Channels are small enough that building, saving and loading
take a few seconds on one CPU thread (most of it importing diffusers).

`write_layout` writes only the configs, tokenizer files and empty placeholder weight files: enough for
the folder checks, which read JSON only and need no `t2i` extra. `make_tiny_sd` adds real weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from sidbench.nets.sd15 import COMPONENT_FILES

LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
MERGES = ["c a", "ca t</w>"]
VOCAB = {tok: i for i, tok in enumerate(
    LETTERS + [c + "</w>" for c in LETTERS] + ["ca", "cat</w>", "<|startoftext|>", "<|endoftext|>"])}
BOS, EOS = VOCAB["<|startoftext|>"], VOCAB["<|endoftext|>"]

UNET = {"_class_name": "UNet2DConditionModel", "sample_size": 8, "in_channels": 4, "out_channels": 4,
        "layers_per_block": 1, "block_out_channels": [8, 16], "norm_num_groups": 4,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 16,
        "attention_head_dim": 2}
VAE = {"_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
       "block_out_channels": [8, 8], "down_block_types": ["DownEncoderBlock2D"] * 2,
       "up_block_types": ["UpDecoderBlock2D"] * 2, "layers_per_block": 1, "norm_num_groups": 4,
       "sample_size": 16}
TEXT = {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "vocab_size": len(VOCAB),
        "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "max_position_embeddings": 8, "bos_token_id": BOS, "eos_token_id": EOS, "pad_token_id": EOS}
SCHEDULER = {"_class_name": "PNDMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,  # SD 1.5's
             "beta_end": 0.012, "beta_schedule": "scaled_linear", "skip_prk_steps": True,
             "set_alpha_to_one": False, "steps_offset": 1, "clip_sample": False}
TOKENIZER = {"model_max_length": 8, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
             "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
MODEL_INDEX = {"_class_name": "StableDiffusionPipeline", "scheduler": ["diffusers", "PNDMScheduler"],
               "text_encoder": ["transformers", "CLIPTextModel"],
               "tokenizer": ["transformers", "CLIPTokenizer"],
               "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
               "safety_checker": [None, None], "feature_extractor": [None, None]}
CONFIG_FILES = {"model_index.json": MODEL_INDEX, "unet/config.json": UNET, "vae/config.json": VAE,
                "text_encoder/config.json": TEXT, "scheduler/scheduler_config.json": SCHEDULER,
                "tokenizer/tokenizer_config.json": TOKENIZER}


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def init_args(config: dict) -> dict:
    """A config file's entries minus the bookkeeping ones (class names, model type)."""
    skip = ("architectures", "model_type")
    return {k: v for k, v in config.items() if not k.startswith("_") and k not in skip}


def write_layout(root: Path) -> Path:
    """SD 1.5's configs and tokenizer files, with empty placeholder weight files (enough for the checks)."""
    for name, config in CONFIG_FILES.items():
        write_json(root / name, config)
    (root / "tokenizer" / "vocab.json").write_text(json.dumps(VOCAB))
    (root / "tokenizer" / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    for component, names in COMPONENT_FILES.items():
        for name in names:
            (root / component / name).touch(exist_ok=True)
    return root


def make_tiny_sd(root: Path, seed: int = 0) -> Path:
    """`write_layout` plus random UNet, VAE and text-encoder weights (safetensors); returns `root`.

    The global torch RNG is left as it was.
    """
    import diffusers
    import transformers

    root = write_layout(Path(root))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        diffusers.UNet2DConditionModel(**init_args(UNET)).save_pretrained(root / "unet")
        diffusers.AutoencoderKL(**init_args(VAE)).save_pretrained(root / "vae")
        config = transformers.CLIPTextConfig(**init_args(TEXT))
        transformers.CLIPTextModel(config).save_pretrained(root / "text_encoder")
    return root


@pytest.fixture(scope="module")
def tiny_sd15(tmp_path_factory) -> Path:
    """A complete tiny random SD-1.5-style folder, shared by a test module (do not modify it: copy it)."""
    return make_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd15")
