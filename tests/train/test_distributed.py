"""1 process x 4 accumulation rounds == 2 gloo processes x 2 rounds == 1 x 1 with the full batch.

Weights agree within floating-point reduction order, and every sample's draws and data are
identical (each process logs what its samples drew). The processes are started with
torch.multiprocessing and torchrun's environment variables (what `torchrun --nproc_per_node 2` sets).
"""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from sidbench.train import load_recipe, train
from tests.train import _methods
from tests.train._methods import TOY_TEACHER, save_teacher, toy_recipe

pytestmark = pytest.mark.distributed


def _draw_recipe():
    return {"suite": "toy2d", "method": "test-drawlog",
            "training": {"seed": 1, "batch": 8, "duration_kimg": 0.024, "checkpoint_kimg": None,
                         "tensorboard": False, "architecture": TOY_TEACHER,
                         "networks": {"denoiser": {"lr": 1e-3}}}}


def _worker(rank: int, world: int, ports: tuple[int, int], teacher: str, out: str, cache: str) -> None:
    """One process as torchrun starts it: train() opens (and closes) the gloo process group itself."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(ports[0]), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world), "SIDBENCH_CACHE": cache,
                       "SIDBENCH_NO_PROGRESS": "1"})
    torch.set_num_threads(1)
    import sidbench.train.memory as memory

    memory.available_memory = lambda device: None  # no probe rows in the draw log
    train(load_recipe(toy_recipe(teacher), ["training.batch_per_gpu=2"]), f"{out}/sidlike", progress=False,
          device="cpu")
    assert not torch.distributed.is_initialized()
    os.environ["MASTER_PORT"] = str(ports[1])
    _methods.DRAW_LOG.clear()
    train(load_recipe(_draw_recipe(), ["training.batch_per_gpu=2"]), f"{out}/draws", progress=False,
          device="cpu")
    with open(f"{out}/draws-{rank}.json", "w") as f:
        json.dump(_methods.DRAW_LOG, f)


def _free_ports(n: int) -> tuple[int, ...]:
    """n distinct free ports (held open together while chosen, so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return tuple(s.getsockname()[1] for s in socks)
    finally:
        for s in socks:
            s.close()


def _weights(run, name):
    return load_file(str(run.checkpoint / "networks" / f"{name}.safetensors"))


def test_two_processes_equal_accumulation_and_one_full_batch(tmp_path, monkeypatch):
    import sidbench.train.memory as memory

    monkeypatch.setattr(memory, "available_memory", lambda device: None)  # no probe rows in the draw log
    teacher = str(save_teacher(tmp_path / "teacher"))
    out = tmp_path / "ddp"
    mp.spawn(_worker, args=(2, _free_ports(2), teacher, str(out), os.environ["SIDBENCH_CACHE"]), nprocs=2,
             join=True)
    ddp_dir = out / "sidlike" / "checkpoints" / "step-00000010" / "networks"
    full = train(load_recipe(toy_recipe(teacher)), tmp_path / "full", progress=False)
    accum = train(load_recipe(toy_recipe(teacher), ["training.batch_per_gpu=2"]), tmp_path / "accum",
                  progress=False)
    for name in ("generator", "generator-ema", "fake"):
        ddp = load_file(str(ddp_dir / f"{name}.safetensors"))
        for other in (full, accum):
            ref = _weights(other, name)
            assert max(float((ddp[k] - ref[k]).abs().max()) for k in ref) < 1e-5, name

    single = []
    for split in ([], ["training.batch_per_gpu=2"]):
        _methods.DRAW_LOG.clear()
        train(load_recipe(_draw_recipe(), split), tmp_path / f"draws{len(split)}", progress=False)
        single.append(sorted(map(tuple, _methods.DRAW_LOG)))
    both = [row for r in range(2) for row in json.loads((out / f"draws-{r}.json").read_text())]
    both = sorted((s, u, tuple(n), tuple(d)) for s, u, n, d in both)
    assert both == single[0] == single[1]
    assert len(both) == 3 * 8
