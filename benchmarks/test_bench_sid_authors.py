"""Our SiD step through the trainer vs the authors' SiD step (mingyuanzhou/SiD), side by side.

Needs a checkout of the authors' code, which this repository never contains:

    git archive main | tar -x -C /tmp/sid-main      # in a fetched mingyuanzhou/SiD
    SIDBENCH_SID_AUTHORS=/tmp/sid-main pytest benchmarks/test_bench_sid_authors.py --benchmark-only -s

Skipped without it. Both sides run the same architecture with the same weights and batch on one
thread: theirs is their `EDMPrecond` network, their `SID_EDMLoss` (fake-score loss and
`generator_loss`) and their loop body as `training/sid_training_loop.py` runs it with one
accumulation round (fake-score update: G forward, loss, backward, nan_to_num, Adam step; generator
update likewise with loss scale 100; EMA lerp). Ours is `Stepper.run_step` of the `sid` method.
Timed interleaved; the ratio of median step times (ours / theirs, target <= 1.0) goes to
`benchmark.extra_info["ratio"]`.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np
import pytest
import torch

from sidbench.train.optim import make_optimizer

AUTHORS = os.environ.get("SIDBENCH_SID_AUTHORS")
BATCH = 16
ARCH = dict(img_resolution=16, img_channels=1, label_dim=10, model_channels=16, channel_mult=[1, 2],
            num_blocks=1, attn_resolutions=[], augment_dim=0, dropout=0.0)


def _import_authors(path: str):
    for name in list(sys.modules):
        if name.split(".")[0] in ("training", "torch_utils", "dnnlib"):
            del sys.modules[name]
    sys.path.insert(0, path)
    try:
        import training.networks as networks
        import training.sid_loss as sid_loss
    finally:
        sys.path.remove(path)
    return networks, sid_loss


class AuthorsStep:
    """The body of the authors' `while True:` loop for one round, on their network classes."""

    def __init__(self, networks, sid_loss, state, config):
        def build():
            net = networks.EDMPrecond(model_type="SongUNet", **ARCH)
            net.load_state_dict(state, strict=True)
            return net

        self.true_score = build().eval().requires_grad_(False)
        self.fake_score = build().train().requires_grad_(True)
        self.G = build().train().requires_grad_(False)
        self.G_ema = build().eval().requires_grad_(False)
        self.loss_fn = sid_loss.SID_EDMLoss()
        self.opt_f = make_optimizer(self.fake_score.parameters(), config.network("fake_score"))
        self.opt_g = make_optimizer(self.G.parameters(), config.network("generator"))
        self.s = config.method_settings
        self.nimg = 0

    def step(self, labels: torch.Tensor) -> None:
        init_sigma, shape = self.s.sigma_init, (BATCH, 1, 16, 16)
        self.fake_score.train().requires_grad_(True)
        self.opt_f.zero_grad(set_to_none=True)
        z = init_sigma * torch.randn(shape)
        images = self.G(z, init_sigma * torch.ones(BATCH, 1, 1, 1), labels)
        loss = self.loss_fn(fake_score=self.fake_score, images=images, labels=labels, augment_pipe=None)
        loss.sum().mul(1.0 / BATCH).backward()
        self.fake_score.eval().requires_grad_(False)
        for p in self.fake_score.parameters():
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        self.opt_f.step()

        self.G.train().requires_grad_(True)
        self.opt_g.zero_grad(set_to_none=True)
        z = init_sigma * torch.randn(shape)
        images = self.G(z, init_sigma * torch.ones(BATCH, 1, 1, 1), labels)
        loss = self.loss_fn.generator_loss(true_score=self.true_score, fake_score=self.fake_score,
                                           images=images, labels=labels, augment_pipe=None,
                                           alpha=self.s.alpha, tmax=self.s.tmax)
        loss.sum().mul(self.s.loss_scale / BATCH).backward()
        self.G.eval().requires_grad_(False)
        for p in self.G.parameters():
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        self.opt_g.step()
        halflife = self.s_halflife_nimg
        beta = 0.5 ** (BATCH / max(halflife, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
                p_ema.copy_(p.detach().lerp(p_ema, beta))
        self.nimg += BATCH

    s_halflife_nimg = 500.0


@pytest.mark.skipif(AUTHORS is None, reason="set SIDBENCH_SID_AUTHORS to a checkout of mingyuanzhou/SiD main")
def test_bench_sid_step_vs_authors(benchmark, tmp_path):
    from sidbench.data.digits import DigitsDataset
    from sidbench.nets.build import build_network
    from sidbench.nets.native import save_network
    from sidbench.train.config import load_recipe
    from sidbench.train.data import DatasetData
    from sidbench.train.networks import build_networks
    from sidbench.train.steps import Stepper

    torch.set_num_threads(1)
    config_net = {"class_name": "EDMPrecond", "init_kwargs": {
        **ARCH, "use_fp16": False, "sigma_min": 0, "sigma_max": "inf", "sigma_data": 0.5,
        "model_type": "SongUNet",
        "embedding_type": "positional", "encoder_type": "standard", "decoder_type": "standard",
        "channel_mult_noise": 1, "resample_filter": [1, 1]}}
    torch.manual_seed(0)
    teacher = build_network(config_net)
    save_network(teacher, config_net, tmp_path / "teacher", role="teacher")
    recipe = {"suite": "digits", "method": "sid", "training": {
        "batch": BATCH, "duration_kimg": 1, "teacher": str(tmp_path / "teacher"), "tensorboard": False,
        "networks": {"generator": {"lr": 1e-5, "betas": [0.0, 0.999], "ema_halflife_kimg": 0.5},
                     "fake_score": {"lr": 1e-5, "betas": [0.0, 0.999]}}}}
    config = load_recipe(recipe)
    method = config.get_method()
    nets = build_networks(config, method, torch.device("cpu"), str(tmp_path / "teacher"))
    stepper = Stepper(config, method, nets, torch.device("cpu"), rank=0, world=1, img_shape=(1, 16, 16),
                      label_dim=10)
    data = DatasetData(DigitsDataset(resolution=16), 0, BATCH, images=False, labels=True)
    theirs = AuthorsStep(*_import_authors(AUTHORS), teacher.state_dict(), config)
    idx = stepper.rank_indices
    batches = [data.batch(k, idx) for k in range(64)]
    for k in range(3):
        stepper.run_step(k, batches[k])
        theirs.step(batches[k][1])
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    steps = iter(range(3, 10_000))

    def both():
        k = next(steps)
        t0 = time.perf_counter()
        stepper.run_step(k, batches[k % 64])
        t1 = time.perf_counter()
        theirs.step(batches[k % 64][1])
        t2 = time.perf_counter()
        times["ours"].append(t1 - t0)
        times["theirs"].append(t2 - t1)

    benchmark.pedantic(both, rounds=30, iterations=1)
    ours, authors = statistics.median(times["ours"]), statistics.median(times["theirs"])
    ratio = ours / authors
    benchmark.extra_info.update({"ours_step_ms": round(ours * 1e3, 2),
                                 "authors_step_ms": round(authors * 1e3, 2), "ratio": round(ratio, 3),
                                 "batch": BATCH})
    print(f"\nours {ours * 1e3:.1f} ms, authors {authors * 1e3:.1f} ms, ratio {ratio:.3f}")
    assert np.isfinite(ratio)
