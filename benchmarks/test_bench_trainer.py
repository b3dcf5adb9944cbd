"""The trainer's overhead: one SiD step (fake-score update, then generator update) through the trainer's
step engine vs a bare hand-written loop doing the same passes on the same networks and batch.

Run: pytest benchmarks/test_bench_trainer.py --benchmark-only -p no:cacheprovider -s
The two are timed interleaved (step for step, so a busy machine slows both alike); the ratio of
their median step times goes into `benchmark.extra_info["ratio"]` (target <= 1.05) and is printed.
The trainer's extra work per step: per-sample draw generators, dropout reseeding, mode and
requires_grad switching, loss sums for the NaN guard and the log.
"""

import statistics
import time

import numpy as np
import pytest
import torch

from sidbench.methods.sid import fake_score_loss, generate_images, generator_loss, generator_sigma
from sidbench.train.config import load_recipe
from sidbench.train.data import DatasetData
from sidbench.train.networks import build_networks
from sidbench.train.optim import make_optimizer
from sidbench.train.steps import Stepper

BATCH = 16
TINY = {"class_name": "EDMPrecond", "init_kwargs": {
    "img_resolution": 16, "img_channels": 1, "label_dim": 10, "use_fp16": False, "sigma_min": 0,
    "sigma_max": "inf", "sigma_data": 0.5, "model_type": "SongUNet", "embedding_type": "positional",
    "encoder_type": "standard", "decoder_type": "standard", "channel_mult_noise": 1,
    "resample_filter": [1, 1],
    "model_channels": 16, "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [], "augment_dim": 0,
    "dropout": 0.0}}


def _setup(tmp_path):
    from sidbench.data.digits import DigitsDataset
    from sidbench.nets.build import build_network
    from sidbench.nets.native import save_network

    torch.manual_seed(0)
    save_network(build_network(TINY), TINY, tmp_path / "teacher", role="teacher")
    recipe = {"suite": "digits", "method": "sid", "training": {
        "batch": BATCH, "duration_kimg": 1, "teacher": str(tmp_path / "teacher"), "tensorboard": False,
        "networks": {"generator": {"lr": 1e-5, "betas": [0.0, 0.999]},
                     "fake_score": {"lr": 1e-5, "betas": [0.0, 0.999]}}}}
    config = load_recipe(recipe)
    method = config.get_method()
    nets = build_networks(config, method, torch.device("cpu"), str(tmp_path / "teacher"))
    data = DatasetData(DigitsDataset(resolution=16), 0, BATCH, images=False, labels=True)
    return config, method, nets, data


class BareLoop:
    """The same two updates written out by hand: batched draws from one generator, no bookkeeping."""

    def __init__(self, config, nets):
        self.s = config.method_settings
        self.teacher = nets.teacher
        self.g, self.f = nets.nets["generator"], nets.nets["fake_score"]
        self.ema = nets.emas["generator"]
        self.opt_f = make_optimizer(self.f.parameters(), config.network("fake_score"))
        self.opt_g = make_optimizer(self.g.parameters(), config.network("generator"))
        self.rng = torch.Generator().manual_seed(0)

    def _step(self, opt, net, loss):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for p in net.parameters():
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        opt.step()

    def step(self, k, labels):
        s, shape = self.s, (BATCH, 1, 16, 16)
        # fake-score update
        self.g.eval()
        self.f.train().requires_grad_(True)
        self.g.requires_grad_(False)
        with torch.no_grad():
            x_g = generate_images(self.g, torch.randn(shape, generator=self.rng), labels, s.sigma_init)
        sigma = (torch.randn(BATCH, 1, 1, 1, generator=self.rng) * s.P_std + s.P_mean).exp()
        loss = fake_score_loss(self.f, x_g, sigma, torch.randn(shape, generator=self.rng), labels)
        self._step(self.opt_f, self.f, loss.sum() / BATCH)
        # generator update
        self.f.eval().requires_grad_(False)
        self.g.train().requires_grad_(True)
        x_g = generate_images(self.g, torch.randn(shape, generator=self.rng), labels, s.sigma_init)
        sigma = generator_sigma(torch.rand(BATCH, 1, 1, 1, generator=self.rng), s.tmax)
        noise = torch.randn(shape, generator=self.rng)
        loss = generator_loss(self.teacher, self.f, x_g, sigma, noise, labels, s.alpha)
        self._step(self.opt_g, self.g, loss.sum() * s.loss_scale / BATCH)
        self.ema.update(self.g, (k + 1) * BATCH, BATCH)


def test_bench_trainer_step_vs_bare_loop(benchmark, tmp_path):
    torch.set_num_threads(1)
    config, method, nets, data = _setup(tmp_path / "t")
    stepper = Stepper(config, method, nets, torch.device("cpu"), rank=0, world=1, img_shape=(1, 16, 16),
                      label_dim=10)
    _, _, bare_nets, _ = _setup(tmp_path / "b")
    bare = BareLoop(config, bare_nets)
    idx = stepper.rank_indices
    labels = [data.batch(k, idx)[1] for k in range(64)]
    for k in range(3):  # warm up both
        stepper.run_step(k, data.batch(k, idx))
        bare.step(k, labels[k])
    times = {"trainer": [], "bare": []}
    steps = iter(range(3, 10_000))

    def both():
        k = next(steps)
        t0 = time.perf_counter()
        stepper.run_step(k, data.batch(k, idx))
        t1 = time.perf_counter()
        bare.step(k, labels[k % 64])
        t2 = time.perf_counter()
        times["trainer"].append(t1 - t0)
        times["bare"].append(t2 - t1)

    benchmark.pedantic(both, rounds=30, iterations=1)
    trainer, hand = statistics.median(times["trainer"]), statistics.median(times["bare"])
    ratio = trainer / hand
    benchmark.extra_info.update({"trainer_step_ms": round(trainer * 1e3, 2),
                                 "bare_step_ms": round(hand * 1e3, 2), "ratio": round(ratio, 3),
                                 "batch": BATCH})
    print(f"\ntrainer step {trainer * 1e3:.1f} ms, bare loop {hand * 1e3:.1f} ms, ratio {ratio:.3f}")
    assert np.isfinite(ratio)


@pytest.mark.parametrize("batch", [16, 256])
def test_bench_per_sample_draws(benchmark, batch):
    """The part of the overhead that grows with the batch: one update's per-sample generators and draws."""
    from sidbench.methods.base import Draws
    from sidbench.train.seeds import DRAWS, sample_generators

    idx = np.arange(batch)

    def draws():
        d = Draws(sample_generators(0, 7, DRAWS, 1, idx))
        return d.randn(1, 16, 16), d.rand(1, 1, 1), d.randn(1, 16, 16)

    benchmark(draws)
