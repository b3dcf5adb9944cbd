"""The real, large files the harness can use, and where it looks for them.

Nothing is ever downloaded. Every asset is found either at a path the user gives
or under the cache folder `$SIDBENCH_CACHE` (default `~/.cache/sidbench`) by its
published file name. A missing or different file is one error that names the
file, where it is published and the hash it must have.

Hashes: `sha256` is pinned only where the digest is published (never guessed);
`sha256_prefix` is the prefix that the publisher put in the file name or URL.
Whatever is pinned is checked; the full digest of every file used is recorded in
result records either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sidbench.errors import AssetError, ConfigError
from sidbench.fileio import sha256_file
from sidbench.registry import suggest

_EDM = "https://nvlabs-fi-cdn.nvidia.com/edm"


@dataclass(frozen=True)
class Asset:
    name: str
    filename: str
    url: str
    description: str
    sha256: str | None = None
    sha256_prefix: str | None = None

    def check(self, path: Path) -> str:
        """Return the file's sha256 after checking it against what is pinned."""
        digest = sha256_file(path)
        if self.sha256 and digest != self.sha256:
            raise AssetError(
                f"{path} is not the expected {self.filename}: sha256 {digest} != {self.sha256}",
                hint=f"download it again from {self.url}",
            )
        if self.sha256_prefix and not digest.startswith(self.sha256_prefix):
            raise AssetError(
                f"{path} is not the expected {self.filename}: sha256 {digest[:16]}... does not start "
                f"with {self.sha256_prefix}",
                hint=f"download it again from {self.url}",
            )
        return digest


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset("inception-fidelity", "weights-inception-2015-12-05-6726825d.pth",
              "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
              "weights-inception-2015-12-05-6726825d.pth",
              "torch-fidelity's port of the 2015 TF Inception-v3 (FID/IS/KID, EDM-family protocols)",
              sha256_prefix="6726825d"),
        Asset("inception-torchscript", "inception-2015-12-05.pt",
              "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
              "NVIDIA's TorchScript Inception-v3 (clean-fid, COCO protocol)"),
        Asset("vgg16", "vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
              "torchvision VGG-16 IMAGENET1K_V1 (precision/recall, pr-vgg16)", sha256_prefix="397923af"),
        Asset("clip-vitg14", "open_clip_pytorch_model.bin",
              "https://huggingface.co/laion/CLIP-ViT-g-14-laion2B-s12B-b42K",
              "open_clip ViT-g-14 laion2b_s12b_b42k (CLIP score, COCO protocol)"),
        Asset("coco-captions", "captions.txt",
              "https://github.com/mingyuanzhou/SiD-LSG (captions.txt, from GigaGAN's evaluation)",
              "the fixed 30,000 COCO-2014 captions of the GigaGAN / SiD-LSG protocol",
              sha256="edabd2a556026cbf5d36a5fffa35ad43d7ba71b72f6d640b727c1edefb7f1945"),
        Asset("edm-cifar10-uncond", "edm-cifar10-32x32-uncond-vp.pkl",
              f"{_EDM}/pretrained/edm-cifar10-32x32-uncond-vp.pkl", "EDM CIFAR-10 unconditional teacher"),
        Asset("edm-cifar10-cond", "edm-cifar10-32x32-cond-vp.pkl",
              f"{_EDM}/pretrained/edm-cifar10-32x32-cond-vp.pkl", "EDM CIFAR-10 conditional teacher"),
        Asset("edm-ffhq64", "edm-ffhq-64x64-uncond-vp.pkl",
              f"{_EDM}/pretrained/edm-ffhq-64x64-uncond-vp.pkl", "EDM FFHQ 64 teacher"),
        Asset("edm-afhqv2-64", "edm-afhqv2-64x64-uncond-vp.pkl",
              f"{_EDM}/pretrained/edm-afhqv2-64x64-uncond-vp.pkl", "EDM AFHQv2 64 teacher"),
        Asset("edm-imagenet64", "edm-imagenet-64x64-cond-adm.pkl",
              f"{_EDM}/pretrained/edm-imagenet-64x64-cond-adm.pkl", "EDM ImageNet 64 ADM teacher"),
        Asset("ref-cifar10", "cifar10-32x32.npz", f"{_EDM}/fid-refs/cifar10-32x32.npz",
              "EDM reference statistics, CIFAR-10 train"),
        Asset("ref-imagenet64", "imagenet-64x64.npz", f"{_EDM}/fid-refs/imagenet-64x64.npz",
              "EDM reference statistics, ImageNet 64"),
        Asset("ref-ffhq64", "ffhq-64x64.npz", f"{_EDM}/fid-refs/ffhq-64x64.npz",
              "EDM reference statistics, FFHQ 64"),
        Asset("ref-afhqv2-64", "afhqv2-64x64.npz", f"{_EDM}/fid-refs/afhqv2-64x64.npz",
              "EDM reference statistics, AFHQv2 64"),
        Asset("ref-imagenet64-adm", "VIRTUAL_imagenet64_labeled.npz",
              "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/imagenet/64/"
              "VIRTUAL_imagenet64_labeled.npz",
              "ADM's ImageNet 64 reference batch (10k images, precision/recall)"),
        Asset("cifar10-tarball", "cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
              "CIFAR-10 python tarball"),
    ]
}


def get_asset(name: str) -> Asset:
    """The catalogue entry `name` (close-match suggestion when unknown)."""
    try:
        return ASSETS[name]
    except KeyError:
        raise ConfigError(f"unknown asset '{name}'.{suggest(name, list(ASSETS))}",
                          hint="`sidbench env` lists the known assets") from None


def cache_dir() -> Path:
    """The folder searched for assets by file name."""
    return Path(os.environ.get("SIDBENCH_CACHE", Path.home() / ".cache" / "sidbench")).expanduser()


def converted_dir(name: str) -> Path:
    """Where the native folder converted from pickle asset `name` is looked for.

    `$SIDBENCH_CACHE/<file name without .pkl>/`, the folder `sidbench convert FILE.pkl
    --trust-pickle -o DIR` should write, e.g. `edm-cifar10-32x32-uncond-vp/network.json`.
    """
    return cache_dir() / Path(get_asset(name).filename).stem


def pinned_hash(asset: Asset) -> str:
    """The pinned digest as the user should see it: full, 'prefix...', or 'not pinned'."""
    return asset.sha256 or (f"{asset.sha256_prefix}..." if asset.sha256_prefix else "not pinned")


def resolve_asset(name: str, path: str | os.PathLike | None = None, verify: bool = True) -> Path:
    """Find asset `name` at `path` or in the cache folder; check its pinned hash.

    Raises `AssetError` naming the file, where it is published and its hash.
    """
    asset = get_asset(name)
    candidate = Path(path).expanduser() if path is not None else cache_dir() / asset.filename
    if not candidate.is_file():
        pinned = pinned_hash(asset)
        where = "" if path is not None else f" (searched $SIDBENCH_CACHE={cache_dir()})"
        raise AssetError(
            f"{asset.description}: file {candidate} not found{where}",
            hint=f"download {asset.filename} from {asset.url} (sha256 {pinned}) and pass its path "
                 f"or put it in {cache_dir()}",
        )
    if verify:
        asset.check(candidate)
    return candidate


def asset_report() -> list[dict[str, str]]:
    """One row per known asset: where it would be found and whether it is there."""
    rows = []
    for asset in ASSETS.values():
        path = cache_dir() / asset.filename
        status = "found" if path.is_file() else "missing"
        rows.append({"name": asset.name, "path": str(path), "status": status})
    return rows
