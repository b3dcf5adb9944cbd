"""One pass over the images: every extractor a run needs, exact statistics per (extractor, feature key).

Each process extracts its own shard (image i -> rank i % world) and the statistics are summed
across processes at the end, so the numbers depend neither on the batch size nor on the number
of processes. Raw features are kept only where a metric needs more than sums (IS, KID, P/R).

A batch's exact sums (float64 matmuls) are added in a background thread while the extractor
runs on the next batch: at most one batch waits, in order, and the sums are exact whatever the
timing, so this changes no bit; on two or more CPUs it takes the statistics off the critical path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from sidbench.errors import ConfigError
from sidbench.metrics.extractors import FeatureExtractor
from sidbench.metrics.image_source import ImageSource
from sidbench.metrics.stats import FeatureStats


@dataclass
class FeatureNeeds:
    """What one extractor must produce: per feature key, whether raw features are kept."""

    keep: dict[str, bool] = field(default_factory=dict)

    def add(self, key: str, keep: bool) -> None:
        self.keep[key] = self.keep.get(key, False) or keep


def extract_stats(source: ImageSource, extractors: Mapping[str, FeatureExtractor],
                  needs: Mapping[str, FeatureNeeds], batch_size: int = 64,
                  description: str = "extracting features", rank: int | None = None,
                  world: int | None = None, after_first_batch: Callable[[], None] | None = None
                  ) -> dict[tuple[str, str], FeatureStats]:
    """One pass over this process's shard; statistics all-reduced across processes at the end.

    `after_first_batch` is called once the first batch is extracted (a check that ran meanwhile
    raises there: a run still fails within seconds).
    """
    from sidbench.progress import make_progress

    stats = {(name, key): FeatureStats(keep_features=keep)
             for name, need in needs.items() for key, keep in need.keep.items()}
    if rank is None or world is None:
        import sidbench.distributed as distributed

        rank, world = distributed.rank(), distributed.world_size()
    total = len(source.shard(rank, world))
    with make_progress() as progress, ThreadPoolExecutor(1, thread_name_prefix="sidbench-stats") as pool:
        task = progress.add_task(description, total=total)
        pending: Future | None = None
        for indices, images in source.batches(batch_size, rank, world):
            # a transformed batch can arrive with channels-last strides; convolution kernels (and so
            # the features' last bits) depend on the memory layout, so extractors always get NCHW
            images = images.contiguous()
            batch = []
            for name, need in needs.items():
                feats = extractors[name](images)
                for key in need.keep:
                    if key not in feats:
                        raise ConfigError(f"extractor {name} gives no feature '{key}' "
                                          f"(it has {sorted(feats)})")
                    batch.append((stats[(name, key)], feats[key].cpu()))
            if pending is not None:
                pending.result()  # one batch in flight at most; its errors surface here
            pending = pool.submit(_accumulate, batch, indices)
            progress.advance(task, len(indices))
            if after_first_batch is not None:
                after_first_batch()
                after_first_batch = None
        if pending is not None:
            pending.result()
    for s in stats.values():
        s.all_reduce()
    return stats


def _accumulate(batch: list[tuple[FeatureStats, torch.Tensor]], indices) -> None:
    for target, feats in batch:
        target.update(feats, indices)
