"""Where the images of an evaluation come from: files, a dataset, a tensor or a generator.

Every source is random-access by global image index, so work can be sharded
without coordination: process `rank` of `world` takes indices i with
i % world == rank, extracts features of its shard, and the exact integer
statistics are summed across processes (FeatureStats.all_reduce). Image i is the
same whatever the batch size or number of processes (files sorted by name,
dataset indices fixed, generator image i drawn from seed i alone).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from sidbench.errors import ConfigError, DatasetError

ImageTransform = Callable[[np.ndarray], np.ndarray]


def center_crop_resize(size: int, resample: str = "lanczos") -> ImageTransform:
    """uint8 [C, H, W] -> center crop to the short side, PIL resize to size x size (COCO protocol)."""
    from PIL import Image

    filters = {"lanczos": Image.LANCZOS, "bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}
    if resample not in filters:
        raise ConfigError(f"unknown resample filter '{resample}'", hint=f"use one of {', '.join(filters)}")

    def transform(image: np.ndarray) -> np.ndarray:
        c, h, w = image.shape
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        crop = np.ascontiguousarray(image[:, top:top + s, left:left + s].transpose(1, 2, 0))
        pil = Image.fromarray(crop[:, :, 0] if c == 1 else crop)
        out = np.asarray(pil.resize((size, size), resample=filters[resample]))
        return out[None] if out.ndim == 2 else out.transpose(2, 0, 1)

    transform.description = f"center-crop+{resample}-{size}"  # type: ignore[attr-defined]
    return transform


class ImageSource:
    """Base: `num_images`, `load(indices) -> uint8 [n, C, H, W]`, `describe()`.

    `transform` (optional) maps each uint8 [C, H, W] image before batching, so images
    of different sizes (COCO val2014) can be cropped and resized into one batch.
    """

    num_images: int = 0
    transform: ImageTransform | None = None

    def _stack(self, images: list[np.ndarray]) -> torch.Tensor:
        if self.transform is not None:
            images = [self.transform(np.asarray(im)) for im in images]
        return torch.from_numpy(np.stack(images))

    def load(self, indices: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict:
        d = {"kind": type(self).__name__, "num_images": self.num_images}
        if self.transform is not None:
            d["transform"] = getattr(self.transform, "description", repr(self.transform))
        return d

    def shard(self, rank: int = 0, world: int = 1) -> np.ndarray:
        """Global indices of this process's share (i % world == rank)."""
        if not 0 <= rank < world:
            raise ConfigError(f"rank {rank} is outside a world of {world} processes")
        return np.arange(rank, self.num_images, world, dtype=np.int64)

    def batches(self, batch_size: int, rank: int | None = None, world: int | None = None
                ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield (global indices, uint8 images) over this process's shard, in index order."""
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        if rank is None or world is None:
            import sidbench.distributed as distributed

            rank, world = distributed.rank(), distributed.world_size()
        idx = self.shard(rank, world)
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            yield chunk, self.load(chunk)

    def close(self) -> None:
        pass


def _first_n(n_total: int, max_images: int | None, what: str) -> int:
    if max_images is None:
        return n_total
    if max_images < 1:
        raise ConfigError(f"the number of images must be at least 1, got {max_images}")
    if max_images > n_total:
        raise DatasetError(f"{what} holds {n_total} images, {max_images} were asked for",
                           hint="generate more images or lower --num")
    return max_images


class FileImageSource(ImageSource):
    """PNG/JPG images of a folder (recursive) or zip, in sorted name order; the first `max_images`."""

    def __init__(self, path: str | os.PathLike, max_images: int | None = None):
        from sidbench.images import list_image_files

        self.path = Path(path)
        if not self.path.exists():
            raise DatasetError(f"image folder or zip {self.path} not found", hint="check the --images path")
        self.names = list_image_files(self.path)
        if not self.names:
            raise DatasetError(f"no PNG/JPG images found in {self.path}", hint="check the path")
        self.num_images = _first_n(len(self.names), max_images, str(self.path))
        self.names = self.names[: self.num_images]
        self._zip: zipfile.ZipFile | None = None
        self._shape: tuple[int, ...] | None = None

    def _read(self, name: str) -> bytes:
        if self.path.is_dir():
            return (self.path / name).read_bytes()
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        return self._zip.read(name)

    def load(self, indices: np.ndarray) -> torch.Tensor:
        from sidbench.images import decode_image

        out = []
        for i in indices:
            name = self.names[int(i)]
            try:
                img = decode_image(self._read(name))
            except (OSError, SyntaxError, ValueError) as exc:
                raise DatasetError(f"cannot decode {name} in {self.path}: {exc}",
                                   hint="delete or replace it") from None
            if self.transform is not None:
                img = self.transform(img)
            if self._shape is None:
                self._shape = img.shape
            elif img.shape != self._shape:
                raise DatasetError(f"{name} in {self.path} has shape {img.shape}, others {self._shape}",
                                   hint="all images must have the same size and channels")
            out.append(img)
        return torch.from_numpy(np.stack(out))

    def describe(self) -> dict:
        return {**super().describe(), "path": str(self.path)}

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None


class DatasetImageSource(ImageSource):
    """Images of an `ImageDataset`; more than `max_images` -> EDM's seeded subset (seed 0, sorted)."""

    def __init__(self, dataset, max_images: int | None = None, subset_seed: int = 0):
        from sidbench.data.base import subset_indices

        self.dataset = dataset
        self.order = subset_indices(len(dataset), max_images, subset_seed)
        self.num_images = len(self.order)

    def load(self, indices: np.ndarray) -> torch.Tensor:
        return self._stack([np.asarray(self.dataset[int(self.order[i])][0]) for i in indices])

    def describe(self) -> dict:
        d = {**super().describe(), "dataset": getattr(self.dataset, "name", type(self.dataset).__name__)}
        ident = getattr(self.dataset, "identity_sha256", None)
        if callable(ident):
            d["dataset_sha256"] = ident()
        return d


class TensorImageSource(ImageSource):
    """Images already in memory (uint8 [N, C, H, W] tensor or array)."""

    def __init__(self, images: torch.Tensor | np.ndarray):
        self.images = torch.as_tensor(images)
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ConfigError(f"expected uint8 images [N, C, H, W], got {self.images.dtype} "
                              f"{tuple(self.images.shape)}")
        self.num_images = len(self.images)

    def load(self, indices: np.ndarray) -> torch.Tensor:
        batch = self.images[torch.as_tensor(indices, dtype=torch.long)]
        return batch if self.transform is None else self._stack(list(batch.numpy()))


Render = Callable[[Sequence[int]], torch.Tensor]


def onestep_renderer(net, sigma_init: float = 2.5, device: str | torch.device = "cpu",
                     class_idx: int | None = None) -> Render:
    """seeds -> uint8 images of a one-step generator (SiD convention: G(sigma_init * z, sigma_init))."""
    from sidbench.generate import render_seeds

    def render(seeds: Sequence[int]) -> torch.Tensor:
        return torch.from_numpy(render_seeds(net, seeds, "onestep", device, class_idx, sigma_init=sigma_init))

    return render


class GeneratorImageSource(ImageSource):
    """Images made on the fly: image i comes from seeds[i] alone, so batching never changes it."""

    def __init__(self, render: Render, seeds: Sequence[int], description: dict | None = None):
        self.render = render
        self.seeds = [int(s) for s in seeds]
        self.num_images = len(self.seeds)
        self._description = description or {}

    def load(self, indices: np.ndarray) -> torch.Tensor:
        batch = self.render([self.seeds[int(i)] for i in indices])
        return batch if self.transform is None else self._stack(list(batch.numpy()))

    def describe(self) -> dict:
        from sidbench.nets.seeds import format_seeds

        return {**super().describe(), "seeds": format_seeds(self.seeds), **self._description}


def open_images(images, max_images: int | None = None) -> ImageSource:
    """An ImageSource from a source, a path (folder/zip of images, or a dataset), a dataset or a tensor."""
    if isinstance(images, ImageSource):
        return images
    if isinstance(images, (torch.Tensor, np.ndarray)):
        src = TensorImageSource(images)
        if max_images is not None:
            src = TensorImageSource(src.images[: _first_n(src.num_images, max_images, "the image tensor")])
        return src
    if isinstance(images, (str, os.PathLike)):
        path = Path(images)
        # A folder or zip of images (EDM dataset layout included: same sorted images either way).
        if path.is_dir() or (path.is_file() and zipfile.is_zipfile(path)):
            return FileImageSource(path, max_images)
        if path.exists():
            from sidbench.data import open_dataset

            return DatasetImageSource(open_dataset(path, use_labels=False), max_images)
        raise DatasetError(f"{path} not found", hint="give a folder or zip of PNGs, or a dataset path")
    if hasattr(images, "__getitem__") and hasattr(images, "__len__"):
        return DatasetImageSource(images, max_images)
    raise ConfigError(f"cannot read images from a {type(images).__name__}",
                      hint="give a folder/zip path, a dataset, a uint8 tensor or an ImageSource")

