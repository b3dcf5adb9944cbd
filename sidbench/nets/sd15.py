"""Stable Diffusion 1.5 from a local diffusers folder (the COCO-2014 T2I suite's teacher).

SD 1.5 is many files, so it is given as a folder in the diffusers layout and read
with `local_files_only=True`: nothing is downloaded. The folder is checked from its
JSON configs before any weights are read (a 4 GB load should not be what reveals a
wrong folder): every component must be there, weights must be safetensors (pickled
`.bin` files are never loaded), and the configs must fit together the way SiD-LSG
uses them (UNet channels = VAE latent channels, UNet cross-attention width = CLIP
hidden size, an epsilon-predicting 1000-step DDPM schedule). Sizes are not pinned, so
SD 2.1-base and tiny random test pipelines pass; SDXL, inpainting and v-prediction
folders are refused. diffusers and transformers are the optional `t2i` extra and are
imported only here, on use.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sidbench.errors import AssetError, ConfigError

EXPECTED = ("model_index.json", "unet/", "vae/", "text_encoder/", "tokenizer/", "scheduler/")
# The files each component folder must hold; "*.safetensors" may also be sharded ("*.safetensors.index.json").
COMPONENT_FILES = {
    "unet": ("config.json", "diffusion_pytorch_model.safetensors"),
    "vae": ("config.json", "diffusion_pytorch_model.safetensors"),
    "text_encoder": ("config.json", "model.safetensors"),
    "tokenizer": ("vocab.json", "merges.txt"),
    "scheduler": ("scheduler_config.json",),
}
# The pickled files a snapshot may hold instead; named in the error, never loaded.
PICKLED_NAMES = {"diffusion_pytorch_model.safetensors": "diffusion_pytorch_model.bin",
                 "model.safetensors": "pytorch_model.bin"}
PIPELINE_CLASS = "StableDiffusionPipeline"
COMPONENT_CLASSES = {
    "unet": ("UNet2DConditionModel",),
    "vae": ("AutoencoderKL",),
    "text_encoder": ("CLIPTextModel",),
    "tokenizer": ("CLIPTokenizer", "CLIPTokenizerFast"),
}
NUM_TRAIN_TIMESTEPS = 1000  # SiD-LSG's t_init = 625 and t in [20, 980) are steps of this schedule
_INSTALL_HINT = 'install the text-to-image extra: pip install -e ".[t2i]"'
_LAYOUT_HINT = f"give a local diffusers folder with {', '.join(EXPECTED)} " \
               "(e.g. a downloaded runwayml/stable-diffusion-v1-5 snapshot)"


@dataclass
class SD15:
    """The parts of SD 1.5 that SiD-LSG uses."""

    unet: Any  # diffusers UNet2DConditionModel
    vae: Any  # diffusers AutoencoderKL
    text_encoder: Any  # transformers CLIPTextModel
    tokenizer: Any  # transformers CLIPTokenizer
    scheduler: Any  # diffusers DDPMScheduler (its config holds the 1000-step beta schedule)
    path: Path


def _has_file(folder: Path, name: str) -> bool:
    if (folder / name).is_file():
        return True
    return name.endswith(".safetensors") and (folder / f"{name}.index.json").is_file()


def _missing_files(root: Path) -> list[str]:
    """Component files that are absent, as "unet/config.json"; a pickled-only weights file says so."""
    missing = []
    for component, names in COMPONENT_FILES.items():
        for name in names:
            if _has_file(root / component, name):
                continue
            pickled = name in PICKLED_NAMES and (root / component / PICKLED_NAMES[name]).is_file()
            missing.append(f"{component}/{name}" + (" (only a pickled .bin is there)" if pickled else ""))
    return missing


def _read_json(path: Path, root: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AssetError(f"cannot read {path.relative_to(root)} in {root}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}",
                         hint="the download is damaged; fetch that file again") from None
    if not isinstance(data, dict):
        raise AssetError(f"{path.relative_to(root)} in {root} is not a JSON object",
                         hint="the download is damaged; fetch that file again")
    return data


def _class_of(entry: Any) -> str | None:
    """model_index.json names a component as ["library", "ClassName"]."""
    return entry[1] if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str) else None


def _as_dims(value: Any) -> set[Any]:
    return set(value) if isinstance(value, (list, tuple)) else {value}


def _shape_problems(root: Path) -> list[str]:
    """Why the configs are not an SD-1.5-style pipeline (empty if they are)."""
    index = _read_json(root / "model_index.json", root)
    unet = _read_json(root / "unet" / "config.json", root)
    vae = _read_json(root / "vae" / "config.json", root)
    text = _read_json(root / "text_encoder" / "config.json", root)
    sched = _read_json(root / "scheduler" / "scheduler_config.json", root)
    problems = []
    if index.get("_class_name") != PIPELINE_CLASS:
        problems.append(f"model_index.json is a {index.get('_class_name')!r}, not a {PIPELINE_CLASS!r}")
    for component, classes in COMPONENT_CLASSES.items():
        name = _class_of(index.get(component))
        if name not in classes:
            problems.append(f"model_index.json gives {component} as {name!r}, not {' or '.join(classes)}")
    if unet.get("_class_name", "UNet2DConditionModel") != "UNet2DConditionModel":
        problems.append(f"unet is a {unet.get('_class_name')!r}, not a UNet2DConditionModel")
    latent = vae.get("latent_channels")
    if (unet.get("in_channels"), unet.get("out_channels")) != (latent, latent):
        problems.append(f"unet in/out channels {unet.get('in_channels')}/{unet.get('out_channels')} "
                        f"differ from the VAE's {latent} latent channels")
    hidden = text.get("hidden_size")
    if _as_dims(unet.get("cross_attention_dim")) != {hidden}:
        problems.append(f"unet cross_attention_dim {unet.get('cross_attention_dim')} differs from the "
                        f"text encoder's hidden_size {hidden}")
    if unet.get("addition_embed_type") is not None:
        problems.append(f"unet has addition_embed_type {unet['addition_embed_type']!r} (an SDXL-style UNet)")
    prediction = sched.get("prediction_type", "epsilon")
    if prediction != "epsilon":
        problems.append(f"the scheduler predicts {prediction!r}, not 'epsilon'")
    # diffusers' DDPMScheduler clips x0 to [-1, 1] unless told not to (default True): SD's configs say
    # false, and SiD-LSG's x0 (like ours) is unclipped, so a config that clips would change the teacher.
    if sched.get("clip_sample", True) is not False:
        problems.append(f"the scheduler clips x0 (clip_sample {sched.get('clip_sample', 'missing: true')}), "
                        "SD's configs set it false")
    if sched.get("thresholding", False):
        problems.append("the scheduler applies dynamic thresholding to x0, SD's configs do not")
    steps = sched.get("num_train_timesteps", NUM_TRAIN_TIMESTEPS)
    if steps != NUM_TRAIN_TIMESTEPS:
        problems.append(f"the scheduler has {steps} training steps, not {NUM_TRAIN_TIMESTEPS}")
    return problems


def check_sd15_folder(path: str | os.PathLike) -> Path:
    """The folder, if it is a complete SD-1.5-style diffusers folder; otherwise one AssetError saying why.

    Reads only JSON, so it needs neither the `t2i` extra nor time.
    """
    root = Path(path)
    if not root.is_dir():
        raise AssetError(f"Stable Diffusion 1.5 folder {root} does not exist", hint=_LAYOUT_HINT)
    missing = []
    for name in EXPECTED:
        target = root / name.rstrip("/")
        if not (target.is_dir() if name.endswith("/") else target.is_file()):
            missing.append(name)
    if missing:
        raise AssetError(f"{root} is not a diffusers Stable Diffusion folder: missing {', '.join(missing)}",
                         hint=f"the folder must hold {', '.join(EXPECTED)}")
    missing = _missing_files(root)
    if missing:
        raise AssetError(f"Stable Diffusion folder {root} is incomplete: missing {', '.join(missing)}",
                         hint="download the full diffusers snapshot with its .safetensors weights; "
                              "sidbench never unpickles .bin files")
    problems = _shape_problems(root)
    if problems:
        raise AssetError(f"{root} is not a Stable Diffusion 1.5-style pipeline: {'; '.join(problems)}",
                         hint="use an SD 1.5 (or 2.1-base) diffusers folder; SDXL, inpainting and "
                              "v-prediction models do not fit SiD-LSG")
    return root


def _import_t2i() -> tuple[Any, Any]:
    try:
        import diffusers
        import transformers
    except ImportError as exc:
        raise ConfigError(f"Stable Diffusion needs diffusers and transformers ({exc.name or exc} is missing)",
                          hint=_INSTALL_HINT) from None
    return diffusers, transformers


def _first_lines(exc: BaseException, limit: int = 300) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[:2]) or type(exc).__name__  # torch puts the mismatched key on line 2
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _load(root: Path, component: str, errors: tuple[type[BaseException], ...], load: Any) -> Any:
    try:
        return load()
    except errors as exc:
        raise AssetError(f"cannot load the Stable Diffusion 1.5 {component} from {root / component}: "
                         f"{_first_lines(exc)}",
                         hint="its files do not match its config or are damaged; "
                              "download that folder of the diffusers snapshot again") from None


def load_sd15(path: str | os.PathLike, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32) -> SD15:
    """Load UNet, VAE, CLIP text encoder, tokenizer and DDPM scheduler from a local folder (eval mode)."""
    root = check_sd15_folder(path)
    diffusers, transformers = _import_t2i()
    from safetensors import SafetensorError  # a dependency of both

    common: dict[str, Any] = dict(local_files_only=True)
    weights: dict[str, Any] = dict(torch_dtype=dtype, use_safetensors=True, **common)
    # Without accelerate diffusers warns and falls back to a random init before loading; say so up front.
    unet_vae = dict(low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None, **weights)
    damaged = (OSError, ValueError, RuntimeError, SafetensorError)  # RuntimeError: state_dict size mismatch
    unet = _load(root, "unet", damaged, lambda: diffusers.UNet2DConditionModel.from_pretrained(
        root, subfolder="unet", **unet_vae))
    vae = _load(root, "vae", damaged, lambda: diffusers.AutoencoderKL.from_pretrained(
        root, subfolder="vae", **unet_vae))
    text_encoder = _load(root, "text_encoder", damaged, lambda: transformers.CLIPTextModel.from_pretrained(
        root, subfolder="text_encoder", **weights))
    # The tokenizers library reports a malformed vocab.json / merges.txt as a bare Exception.
    tokenizer = _load(root, "tokenizer", (Exception,), lambda: transformers.CLIPTokenizer.from_pretrained(
        root, subfolder="tokenizer", **common))
    scheduler = _load(root, "scheduler", damaged, lambda: diffusers.DDPMScheduler.from_pretrained(
        root, subfolder="scheduler", **common))
    for module in (unet, vae, text_encoder):  # callers that train a copy re-enable its gradients
        module.to(device).eval().requires_grad_(False)
    return SD15(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
                path=root)
