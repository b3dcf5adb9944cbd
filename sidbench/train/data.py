"""Training data by global sample index: images and labels of sample j at step k, whatever the split.

A finite dataset is read through `DataOrder` (position k * batch + j of a per-epoch
permutation seeded from the run seed); generated data (toy2d's mixture) is drawn from
sample j's own generator. Either way the batch a process reads depends only on the
step and the global indices it owns, so the data are split-independent and a resumed
run reads what the uninterrupted one read, with no loader state saved.
Labels are one-hot float32 [b, label_dim]; images float32 in [-1, 1], on the CPU.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from sidbench.train.seeds import DATA, DataOrder, sample_generators

Batch = tuple[torch.Tensor | None, torch.Tensor | None]  # (images, labels)


class TrainingData:
    """No data: a data-free method on an unconditional suite."""

    label_dim: int = 0
    describe_kind = "none"

    def batch(self, step: int, indices: np.ndarray) -> Batch:
        return None, None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.describe_kind}

    def close(self) -> None:
        pass


class DatasetData(TrainingData):
    """An ImageDataset in a seeded per-epoch order; images read only when the method needs them."""

    describe_kind = "dataset"

    def __init__(self, dataset: Any, seed: int, batch: int, *, images: bool, labels: bool):
        self.dataset = dataset
        self.batch_size = int(batch)
        self.order = DataOrder(seed, len(dataset))
        self.want_images = images
        self.label_dim = int(dataset.label_dim) if labels else 0
        self._labels = torch.as_tensor(dataset.labels) if self.label_dim else None

    def batch(self, step: int, indices: np.ndarray) -> Batch:
        positions = np.int64(step) * self.batch_size + np.asarray(indices, dtype=np.int64)
        items = self.order.indices(positions)
        labels = None
        if self._labels is not None:
            labels = torch.nn.functional.one_hot(self._labels[torch.from_numpy(items)], self.label_dim)
            labels = labels.to(torch.float32)
        images = None
        if self.want_images:
            pixels = np.stack([self.dataset[int(i)][0] for i in items])
            images = torch.from_numpy(pixels).to(torch.float32) / 127.5 - 1.0
        return images, labels

    def describe(self) -> dict[str, Any]:
        info = self.dataset.describe() if hasattr(self.dataset, "describe") else {}
        return {"kind": self.describe_kind, **info, "images": self.want_images,
                "labels": bool(self.label_dim)}

    def close(self) -> None:
        self.dataset.close()


class MixtureData(TrainingData):
    """Fresh points of a 2-D mixture ([b, 2, 1, 1]); point j of step k from its own generator."""

    describe_kind = "mixture"

    def __init__(self, mixture: Any, seed: int, settings: dict | None = None):
        self.mixture = mixture
        self.seed = int(seed)
        self.settings = dict(settings or {})

    def batch(self, step: int, indices: np.ndarray) -> Batch:
        gens = sample_generators(self.seed, step, DATA, 0, indices)
        return torch.cat([self.mixture.sample(1, g) for g in gens]), None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.describe_kind, **self.settings}


class Prefetcher:
    """Reads the next step's batch in a background thread while the current step trains."""

    def __init__(self, data: TrainingData, indices: np.ndarray):
        self.data = data
        self.indices = indices
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sidbench-data")
        self._pending: tuple[int, Future] | None = None

    def get(self, step: int) -> Batch:
        if self._pending is not None and self._pending[0] == step:
            batch = self._pending[1].result()
        else:
            batch = self.data.batch(step, self.indices)
        self._pending = (step + 1, self._pool.submit(self.data.batch, step + 1, self.indices))
        return batch

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def open_training_data(suite: Any, method: Any, seed: int, batch: int, dataset_path: str | None = None
                       ) -> TrainingData:
    """The data a method needs on `suite`: real images when it says so, labels on a conditional suite."""
    from sidbench.errors import ConfigError
    from sidbench.suites.resolve import check_suite_dataset

    needs_images = bool(method.needs_real_data)
    # A text-to-image suite's labels only caption real images (teacher training); prompts condition the rest.
    needs_labels = suite.label_dim > 0 and (needs_images or not suite.settings.get("text_to_image"))
    if not (needs_images or needs_labels):
        if dataset_path is not None:
            raise ConfigError(f"training.dataset is set, but method {method.name} on suite {suite.name} "
                              "reads no data (data-free, unconditional)", hint="drop training.dataset")
        return TrainingData()
    if suite.dataset.num_images == 0:  # generated data
        mixture = suite.settings.get("mixture")
        if mixture is None or not needs_images:
            raise ConfigError(f"suite {suite.name} has no dataset to read labels from",
                              hint="use a suite with a dataset")
        if dataset_path is not None:
            raise ConfigError(f"suite {suite.name}'s data is generated; training.dataset does not apply",
                              hint="drop training.dataset")
        from sidbench.data.toy2d import default_mixture

        return MixtureData(default_mixture(**mixture), seed, {"mixture": mixture})
    dataset = check_suite_dataset(suite, dataset_path)
    return DatasetData(dataset, seed, batch, images=needs_images, labels=needs_labels)
