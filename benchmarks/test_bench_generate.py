"""Sampling throughput on CPU: EDM Heun (18 steps, 35 NFE) and one-step, small random SongUNet.

Run: pytest benchmarks/test_bench_generate.py --benchmark-only -p no:cacheprovider
Images per second go into `benchmark.extra_info` (no timing assertions).
"""

import pytest
import torch

from sidbench.generation import generate
from sidbench.nets.build import build_network

CONFIG = {"class_name": "EDMPrecond", "init_kwargs": {
    "img_resolution": 32, "img_channels": 3, "label_dim": 0, "use_fp16": False, "sigma_min": 0,
    "sigma_max": "inf", "sigma_data": 0.5, "model_type": "SongUNet", "embedding_type": "positional",
    "encoder_type": "standard", "decoder_type": "standard", "channel_mult_noise": 1,
    "resample_filter": [1, 1], "model_channels": 32, "channel_mult": [1, 2, 2], "num_blocks": 2,
    "attn_resolutions": [16], "augment_dim": 9, "dropout": 0.1}}


@pytest.mark.parametrize(("sampler", "num"), [("heun", 4), ("onestep", 64)])
def test_bench_generate(benchmark, tmp_path, sampler, num):
    torch.manual_seed(0)
    net = build_network(CONFIG).eval()
    runs = iter(range(1000))

    def once():
        return generate(net, tmp_path / f"o{next(runs)}", list(range(num)), batch_size=num, sampler=sampler,
                        num_steps=18, progress=False)

    summary = benchmark.pedantic(once, rounds=2, iterations=1)
    benchmark.extra_info["images_per_second"] = summary.images_per_second
    benchmark.extra_info["nfe_per_image"] = summary.nfe
