"""Where the images of an evaluation come from: files, a dataset, a tensor or a generator.

Every source is random-access by global image index, so work can be sharded
without coordination: process `rank` of `world` takes indices i with
i % world == rank, extracts features of its shard, and the exact integer
statistics are summed across processes (FeatureStats.all_reduce). Image i is the
same whatever the batch size or number of processes (files sorted by name,
dataset indices fixed, generator image i drawn from seed i alone). This is the one
place that shards images.

Files are read by `sidbench.images` (one decoder, one mode policy, one folder/zip
reader) whether they are generated images, a dataset or reference images. A limited
read names its subset policy (`sidbench.data.subset`: "first" or "edm-seeded") and
`describe()` records it with the resulting count.

File and dataset sources decode the next batch in a background thread while the
caller extracts features from the current one; on machines with more than two CPUs
each batch is also decoded by a few threads (Pillow releases the GIL while decoding).
On two CPUs or fewer the one background thread is all, so reading never competes with
the extractor for cores.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidbench.data.subset import check_subset, describe_subset, subset_indices
from sidbench.errors import ConfigError, DatasetError

ImageTransform = Callable[[np.ndarray], np.ndarray]


def center_crop_resize(size: int, resample: str = "lanczos") -> ImageTransform:
    """uint8 [C, H, W] -> center crop to the short side, PIL resize to size x size (COCO protocol)."""
    from PIL import Image

    filters = {"lanczos": Image.LANCZOS, "bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}
    if resample not in filters:
        raise ConfigError(f"unknown resample filter '{resample}'", hint=f"use one of {', '.join(filters)}")

    def transform(image: np.ndarray) -> np.ndarray:
        if image.shape[0] == 1:  # COCO holds some grey JPEGs; GigaGAN reads every image as RGB
            image = np.repeat(image, 3, axis=0)
        c, h, w = image.shape
        s = min(h, w)
        # torchvision's center_crop (GigaGAN's) rounds the offset half to even, as round() does
        top, left = round((h - s) / 2), round((w - s) / 2)
        crop = np.ascontiguousarray(image[:, top:top + s, left:left + s].transpose(1, 2, 0))
        pil = Image.fromarray(crop[:, :, 0] if c == 1 else crop)
        out = np.asarray(pil.resize((size, size), resample=filters[resample]))
        return out[None] if out.ndim == 2 else out.transpose(2, 0, 1)

    transform.description = f"center-crop+{resample}-{size}"  # type: ignore[attr-defined]
    return transform


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask where there is one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_read_threads() -> int:
    """Threads that decode one batch: none on <= 2 CPUs (the prefetch thread is enough), else a few."""
    cpus = usable_cpus()
    return 0 if cpus <= 2 else min(8, cpus - 1)


class ImageSource:
    """Base: `num_images`, `load(indices) -> uint8 [n, C, H, W]`, `describe()`.

    `transform` (optional) maps each uint8 [C, H, W] image before batching, so images
    of different sizes (COCO val2014) can be cropped and resized into one batch.
    Sources of decoded files implement `_load_one(i)` and `_name(i)`; `prefetch` makes
    `batches()` read the next batch in the background.
    """

    num_images: int = 0
    transform: ImageTransform | None = None
    prefetch: bool = False
    threads: int = 0

    # --- per-image sources (files, datasets) ----------------------------------------------------
    def _load_one(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def _name(self, i: int) -> str:
        return f"image {i}"

    def _prepared(self, i: int) -> np.ndarray:
        img = np.asarray(self._load_one(i))
        return img if self.transform is None else self.transform(img)

    def load(self, indices: np.ndarray) -> torch.Tensor:
        positions = [int(i) for i in indices]
        if self.threads > 1 and len(positions) > 1:
            with ThreadPoolExecutor(self.threads, thread_name_prefix="sidbench-decode") as pool:
                images = list(pool.map(self._prepared, positions))
        else:
            images = [self._prepared(i) for i in positions]
        shape = getattr(self, "_shape", None)
        for i, img in zip(positions, images, strict=True):
            if shape is None:
                shape = self._shape = img.shape
            elif img.shape != shape:
                raise DatasetError(f"{self._name(i)} has shape {img.shape}, the images before it {shape}",
                                   hint="all images must have the same size and channels")
        return torch.from_numpy(np.stack(images))

    # --- every source ---------------------------------------------------------------------------
    def _stack(self, images: list[np.ndarray]) -> torch.Tensor:
        if self.transform is not None:
            images = [self.transform(np.asarray(im)) for im in images]
        return torch.from_numpy(np.stack(images))

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": type(self).__name__, "num_images": self.num_images}
        if self.transform is not None:
            d["transform"] = getattr(self.transform, "description", repr(self.transform))
        return d

    def shard(self, rank: int = 0, world: int = 1) -> np.ndarray:
        """Global indices of this process's share (i % world == rank)."""
        if world < 1 or not 0 <= rank < world:
            raise ConfigError(f"rank {rank} is outside a world of {world} processes")
        return np.arange(rank, self.num_images, world, dtype=np.int64)

    def batches(self, batch_size: int, rank: int | None = None, world: int | None = None
                ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield (global indices, uint8 images) over this process's shard, in index order.

        Rank and world default to `sidbench.distributed`'s.
        """
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        if rank is None or world is None:
            import sidbench.distributed as distributed

            rank, world = distributed.rank(), distributed.world_size()
        idx = self.shard(rank, world)
        chunks = [idx[start:start + batch_size] for start in range(0, len(idx), batch_size)]
        if not self.prefetch or len(chunks) < 2:
            for chunk in chunks:
                yield chunk, self.load(chunk)
            return
        pool = ThreadPoolExecutor(1, thread_name_prefix="sidbench-read")
        try:
            pending: Future = pool.submit(self.load, chunks[0])
            for k, chunk in enumerate(chunks):
                images = pending.result()
                if k + 1 < len(chunks):
                    pending = pool.submit(self.load, chunks[k + 1])
                yield chunk, images
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        pass

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileImageSource(ImageSource):
    """Images of a folder (recursive) or zip, in sorted name order (`sidbench.images.ImageFiles`).

    `max_images` limits the read under `subset`: "first" (default: generated images, image i
    from seed i; fewer images than asked is an error) or "edm-seeded" (EDM's seeded subset).
    """

    def __init__(self, path: str | os.PathLike, max_images: int | None = None, subset: str = "first",
                 subset_seed: int = 0, threads: int | None = None):
        from sidbench.images import IMAGE_EXTENSIONS, ImageFiles

        self.path = Path(path)
        if not self.path.exists():
            raise DatasetError(f"image folder or zip {self.path} not found", hint="check the --images path")
        self.files = ImageFiles(self.path)
        if not self.files.names:
            raise DatasetError(f"no images found in {self.path}",
                               hint=f"images are files ending in {', '.join(IMAGE_EXTENSIONS)}")
        self.subset, self.subset_seed = check_subset(subset), int(subset_seed)
        self.available = len(self.files.names)
        self.order = subset_indices(self.available, max_images, subset, seed=self.subset_seed,
                                    what=str(self.path))
        self.names = [self.files.names[int(i)] for i in self.order]
        self.num_images = len(self.names)
        self.prefetch = True
        self.threads = default_read_threads() if threads is None else int(threads)
        self._shape: tuple[int, ...] | None = None

    def _load_one(self, i: int) -> np.ndarray:
        return self.files.load(int(self.order[i]))

    def _name(self, i: int) -> str:
        return self.files.where(self.names[i])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "path": str(self.path),
                "subset": describe_subset(self.subset, self.num_images, self.available, self.subset_seed)}

    def close(self) -> None:
        self.files.close()


class DatasetImageSource(ImageSource):
    """Images of an `ImageDataset` (or any `dataset[i] -> (image, label)` sequence).

    `max_images` limits the read under `subset`: "edm-seeded" (default: EDM's seeded subset,
    how EDM picks reference images, so statistics match EDM's) or "first".
    """

    def __init__(self, dataset: Any, max_images: int | None = None, subset: str = "edm-seeded",
                 subset_seed: int = 0, threads: int | None = None):
        self.dataset = dataset
        self.subset, self.subset_seed = check_subset(subset), int(subset_seed)
        self.available = len(dataset)
        name = getattr(dataset, "name", type(dataset).__name__)
        self.order = subset_indices(self.available, max_images, subset, seed=self.subset_seed,
                                    what=f"dataset {name}")
        self.num_images = len(self.order)
        self.prefetch = True
        self.threads = default_read_threads() if threads is None else int(threads)
        self._shape: tuple[int, ...] | None = None

    def _load_one(self, i: int) -> np.ndarray:
        return self.dataset[int(self.order[i])][0]

    def _name(self, i: int) -> str:
        return f"image {int(self.order[i])} of {getattr(self.dataset, 'source', '') or 'the dataset'}"

    def describe(self) -> dict[str, Any]:
        d = {**super().describe(), "dataset": getattr(self.dataset, "name", type(self.dataset).__name__),
             "subset": describe_subset(self.subset, self.num_images, self.available, self.subset_seed)}
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
        self._subset: dict[str, Any] | None = None

    @classmethod
    def limited(cls, images: torch.Tensor | np.ndarray, max_images: int | None, subset: str = "first",
                subset_seed: int = 0) -> TensorImageSource:
        """The `max_images` of `images` that `subset` picks, the policy recorded in `describe()`."""
        full = cls(images)
        idx = subset_indices(full.num_images, max_images, subset, seed=subset_seed, what="the image tensor")
        src = full if len(idx) == full.num_images else cls(full.images[torch.from_numpy(idx)])
        src._subset = describe_subset(subset, len(idx), full.num_images, subset_seed)
        return src

    def load(self, indices: np.ndarray) -> torch.Tensor:
        batch = self.images[torch.as_tensor(indices, dtype=torch.long)]
        return batch if self.transform is None else self._stack(list(batch.numpy()))

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self._subset is not None:
            d["subset"] = self._subset
        return d


Render = Callable[[Sequence[int]], torch.Tensor]


def onestep_renderer(net: torch.nn.Module, sigma_init: float = 2.5, device: str | torch.device = "cpu",
                     class_idx: int | None = None) -> Render:
    """seeds -> uint8 images of a one-step generator (SiD convention: G(sigma_init * z, sigma_init))."""
    from sidbench.nets.render import render_seeds

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

    def describe(self) -> dict[str, Any]:
        from sidbench.nets.seeds import format_seeds

        return {**super().describe(), "seeds": format_seeds(self.seeds), **self._description}


def open_images(images: Any, max_images: int | None = None, subset: str | None = None,
                subset_seed: int = 0) -> ImageSource:
    """An ImageSource from a source, a path (folder/zip of images, or a dataset), a dataset or a tensor.

    `subset` (for `max_images`) defaults to "first" for folders, zips and tensors (generated
    images: the first N seeds) and "edm-seeded" for datasets (EDM's reference subset).
    An ImageSource is returned as it is.
    """
    if subset is not None:
        check_subset(subset)
    if isinstance(images, ImageSource):
        return images
    if isinstance(images, (torch.Tensor, np.ndarray)):
        return TensorImageSource.limited(images, max_images, subset or "first", subset_seed)
    if isinstance(images, (str, os.PathLike)):
        import zipfile

        path = Path(images)
        # A folder or zip of images (EDM dataset layout included: the same images either way).
        if path.is_dir() or (path.is_file() and zipfile.is_zipfile(path)):
            return FileImageSource(path, max_images, subset or "first", subset_seed)
        if path.exists():
            from sidbench.data import open_dataset

            return DatasetImageSource(open_dataset(path, use_labels=False), max_images,
                                      subset or "edm-seeded", subset_seed)
        raise DatasetError(f"{path} not found", hint="give a folder or zip of images, or a dataset path")
    if hasattr(images, "__getitem__") and hasattr(images, "__len__"):
        return DatasetImageSource(images, max_images, subset or "edm-seeded", subset_seed)
    raise ConfigError(f"cannot read images from a {type(images).__name__}",
                      hint="give a folder/zip path, a dataset, a uint8 tensor or an ImageSource")
