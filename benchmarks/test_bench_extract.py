"""Feature extraction + statistics throughput: ours vs torch-fidelity's own `calculate_metrics`.

Same work on both sides: FID of a folder of PNGs against precomputed reference
statistics (torch-fidelity reads them from its cache, we from an npz), with the
same random-weight Inception file. The two sides alternate, round after round
(torch-fidelity runs in each round's untimed `setup`), and each side's fastest round
counts: on a shared machine the minimum is the least disturbed measurement.
`benchmark.extra_info["ratio"]` is torch-fidelity's fastest time / ours (goal >= 1.0);
`ratio_cpu` is the same for process CPU time (torch-fidelity's data-loader workers
are other processes: their CPU time is not counted, so this ratio favours it).

Image count: $SIDBENCH_BENCH_IMAGES (default 2,000; on a shared CPU run e.g. 200);
rounds: $SIDBENCH_BENCH_ROUNDS (default 2).

    pytest benchmarks/test_bench_extract.py --benchmark-only
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "metrics"))
from _random_weights import save_random_inception  # noqa: E402

NUM_IMAGES = int(os.environ.get("SIDBENCH_BENCH_IMAGES", "2000"))
ROUNDS = int(os.environ.get("SIDBENCH_BENCH_ROUNDS", "2"))
BATCH = 64


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from PIL import Image

    tmp = tmp_path_factory.mktemp("bench-extract")
    weights = save_random_inception(tmp / "random-inception.pth", seed=0)
    folder = tmp / "images"
    folder.mkdir()
    rng = np.random.RandomState(0)
    for i in range(NUM_IMAGES):
        Image.fromarray(rng.randint(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:06d}.png")
    # reference statistics, shared by both sides
    mu = (rng.randn(2048) * 0.1).astype(np.float32).astype(np.float64)  # torch-fidelity keeps mu in float32
    a = rng.randn(2048, 64) * 0.1
    sigma = a @ a.T + np.eye(2048) * 1e-3
    from sidbench.metrics.reference import save_reference

    npz = tmp / "ref.npz"
    save_reference(npz, {"mu": mu, "sigma": sigma})
    cache = tmp / "fidelity-cache"
    cache.mkdir()
    torch.save({"mu": mu.astype(np.float32), "sigma": sigma},
               cache / "bench-ref-inception-v3-compat-stat-fid-2048.pt")
    return weights, folder, npz, cache


def _theirs(setup) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of this process, FID) of one torch-fidelity run."""
    import torch_fidelity

    weights, folder, _, cache = setup
    # input2's statistics come from torch-fidelity's cache (its name "bench-ref"): only input1 is extracted
    kwargs = dict(input1=str(folder), input2=str(folder), input2_cache_name="bench-ref",
                  cache_root=str(cache), cuda=False, fid=True, feature_extractor_weights_path=str(weights),
                  verbose=False, batch_size=BATCH)
    wall, cpu = time.perf_counter(), time.process_time()
    out = torch_fidelity.calculate_metrics(**kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu, out["frechet_inception_distance"]


def _ours(setup, channels_last: bool, cpu_times: list[float]):
    from sidbench.metrics.evaluate import evaluate
    from sidbench.metrics.extractors.inception import InceptionV3Compat

    weights, folder, npz, _ = setup
    cpu = time.process_time()
    ext = InceptionV3Compat(weights, channels_last=channels_last)
    out = evaluate(folder, ref=npz, metrics="fid", extractors={"inception-v3-compat": ext}, batch_size=BATCH)
    cpu_times.append(time.process_time() - cpu)
    return out


@pytest.mark.parametrize("channels_last", [False, True], ids=["exact", "channels-last"])
def test_bench_extract_fid(benchmark, setup, channels_last):
    theirs: list[tuple[float, float, float]] = []
    ours_cpu: list[float] = []

    def their_round():  # pedantic's setup: runs before every timed round, untimed
        theirs.append(_theirs(setup))
        return (setup, channels_last, ours_cpu), {}

    result = benchmark.pedantic(_ours, setup=their_round, rounds=ROUNDS, iterations=1)
    ours_time = benchmark.stats.stats.min
    their_time = min(t for t, _, _ in theirs)
    their_fid = theirs[0][2]
    fid = result["metrics"]["fid"]["value"]
    benchmark.extra_info.update({
        "num_images": NUM_IMAGES, "rounds": ROUNDS, "torch_fidelity_s": their_time, "ours_s": ours_time,
        "ratio": their_time / ours_time, "ratio_cpu": min(c for _, c, _ in theirs) / min(ours_cpu),
        "torch_fidelity_rounds_s": [t for t, _, _ in theirs], "fid_ours": fid,
        "fid_torch_fidelity": their_fid,
        "channels_last": channels_last, "torch_threads": torch.get_num_threads(),
    })
    assert fid == pytest.approx(their_fid, rel=1e-4)
