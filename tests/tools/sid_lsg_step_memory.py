"""Memory and time of one SiD-LSG step at Stable Diffusion 1.5 size, and the batch per GPU that fits.

Random weights in SD 1.5's UNet configuration (860M parameters; no download): generator, fake net
(both trained with Adam) and the frozen teacher, text embeddings of SD's shape [b, 77, 768]. One step is
what the trainer runs: the fake-net update (G(z) without a graph, guided fake eps-MSE, backward, Adam)
then the generator update (G(z) with a graph, guided fake and teacher x0, SiD loss, backward, Adam).
For each batch per GPU it reports peak CUDA memory and the median step time, with and without the
UNets' gradient checkpointing, and stops at the first batch that runs out of memory.

    python tests/tools/sid_lsg_step_memory.py --kappa 1.5 --batches 1 2 4 8 16 --precision bf16

Needs a CUDA device (on a CPU it runs batch 1 once, as a smoke test, if memory allows).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch

SD15_UNET = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768, "attention_head_dim": 8,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                         "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "norm_num_groups": 32,
}


class _Prompts:
    """Stands in for the trainer's Conditioning: random [b, 77, 768] embeddings (the text encoder is
    frozen and outside the step's memory, 123M parameters)."""

    def __init__(self, device: torch.device):
        self.device = device

    def sample(self, draws):
        return ["a photo"] * len(draws)

    def encode(self, prompts):
        g = torch.Generator().manual_seed(len(prompts))
        return torch.randn(len(prompts), 77, 768, generator=g).to(self.device)

    def empty(self, b):
        return torch.zeros(b, 77, 768, device=self.device)


def _nets(device: torch.device, checkpointing: bool):
    from sidbench.nets.ddpm import SD15_SCHEDULE
    from sidbench.nets.eps_unet import EpsDenoiser

    teacher = EpsDenoiser(img_resolution=64, img_channels=4, unet=SD15_UNET, schedule=SD15_SCHEDULE)
    teacher = teacher.to(device)
    teacher.eval().requires_grad_(False)
    nets = {"teacher": teacher}
    for name in ("generator", "fake_score"):
        net = copy.deepcopy(teacher).requires_grad_(True)
        if checkpointing:
            net.model.enable_gradient_checkpointing()
        nets[name] = net
    return nets


def _step(nets, opts, settings, batch: int, device: torch.device, precision: str) -> None:
    from sidbench.methods.base import Draws, UpdateContext
    from sidbench.methods.sid_lsg import fake_score_update, generator_update

    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else \
        torch.autocast(device.type, enabled=False)
    for name, fn in (("fake_score", fake_score_update), ("generator", generator_update)):
        for other, net in nets.items():
            if other != "teacher":
                net.requires_grad_(other == name)
        ctx = UpdateContext(nets=nets, settings=settings,
                            draws=Draws([torch.Generator().manual_seed(i) for i in range(batch)], device),
                            labels=None, images=None, img_shape=(4, 64, 64), label_dim=0, kimg=0.0, step=0,
                            micro_batch=batch, global_batch=batch, conditioning=_Prompts(device))
        opts[name].zero_grad(set_to_none=True)
        with autocast:
            out = fn(ctx)
        (out.per_sample.float().sum() * out.scale / batch).backward()
        opts[name].step()


def measure(batch: int, checkpointing: bool, kappa: float, precision: str, repeats: int,
            device: torch.device) -> dict:
    from sidbench.methods.sid_lsg import SID_LSG

    settings = SID_LSG.make_settings({k: kappa for k in ("cfg_train_fake", "cfg_eval_fake", "cfg_eval_real")})
    nets = _nets(device, checkpointing)
    opts = {n: torch.optim.Adam(nets[n].parameters(), lr=1e-6, betas=(0.0, 0.999)) for n in ("generator",
                                                                                            "fake_score")}
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats + 1):  # the first step allocates Adam's state: not timed
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        _step(nets, opts, settings, batch, device, precision)
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    return {"batch_per_gpu": batch, "gradient_checkpointing": checkpointing, "kappa": kappa,
            "precision": precision, "peak_gib": round(peak, 2) if peak is not None else None,
            "step_s": round(statistics.median(times[1:]), 3) if repeats else round(times[0], 3),
            "img_per_s": round(batch / statistics.median(times[1:]), 2) if repeats else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--kappa", type=float, default=1.5)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        args.batches, args.repeats = [1], 0
    for checkpointing in (False, True):
        for batch in args.batches:
            try:
                row = measure(batch, checkpointing, args.kappa, args.precision, args.repeats, device)
            except torch.OutOfMemoryError:
                print(json.dumps({"batch_per_gpu": batch, "gradient_checkpointing": checkpointing,
                                  "out_of_memory": True}), flush=True)
                torch.cuda.empty_cache()
                break
            print(json.dumps(row), flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
