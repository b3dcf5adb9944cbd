"""A training process SIGKILLed at any moment and resumed with resume="auto" ends with the same bits."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from sidbench.train import load_recipe, train
from sidbench.train.checkpoint import list_checkpoints
from tests.train._methods import save_teacher, toy_recipe

REPO = str(Path(__file__).resolve().parents[2])
LONG = {"duration_kimg": 4.0, "checkpoint_kimg": 0.16, "log_every_kimg": 0.08}

SCRIPT = """
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {repo!r})
from tests.train._methods import toy_recipe
from sidbench.train import load_recipe, train
train(load_recipe(toy_recipe({teacher!r}, **{long!r})), {run!r}, progress=False)
print("FINISHED")
"""


def _start(teacher: Path, run: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SIDBENCH_NO_PROGRESS": "1"}
    code = SCRIPT.format(repo=REPO, teacher=str(teacher), long=LONG, run=str(run))
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _kill_after_a_new_checkpoint(proc: subprocess.Popen, run: Path, seen: int, rng: random.Random) -> int:
    """SIGKILL `proc` at a random moment after a checkpoint newer than step `seen` appears."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = [p for p in list_checkpoints(run) if int(p.name.split("-")[1]) > seen]
        if found:
            time.sleep(rng.uniform(0.0, 0.4))
            break
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    err = proc.stderr.read().decode()[-2000:]
    assert proc.returncode == -signal.SIGKILL, f"the run ended on its own: {err}"
    return int(list_checkpoints(run)[0].name.split("-")[1])


def test_sigkill_at_any_moment_then_resume_auto_gives_the_uninterrupted_weights(tmp_path):
    teacher = save_teacher(tmp_path / "teacher")
    run = tmp_path / "killed"
    rng = random.Random(0)
    seen = 0
    for _ in range(2):  # killed twice, each time after some progress
        proc = _start(teacher, run)
        seen = _kill_after_a_new_checkpoint(proc, run, seen, rng)
    resumed = train(load_recipe(toy_recipe(teacher, **LONG)), run, progress=False)
    assert resumed.finished and resumed.resumed_from is not None
    reference = train(load_recipe(toy_recipe(teacher, **LONG)), tmp_path / "reference", progress=False)
    for name in ("generator", "generator-ema", "fake"):
        a = load_file(str(resumed.checkpoint / "networks" / f"{name}.safetensors"))
        b = load_file(str(reference.checkpoint / "networks" / f"{name}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    a = load_file(str(resumed.checkpoint / "optimizers.safetensors"))
    b = load_file(str(reference.checkpoint / "optimizers.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == resumed.steps  # no duplicated or cut lines
