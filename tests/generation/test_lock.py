"""One writer per output: a second one fails at once naming the first's PID; a dead holder's lock is stale."""

import json
import os
import signal
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

import sidbench.generation.lock as lock_module
from sidbench import images as imgio
from sidbench.errors import SidbenchError
from sidbench.generation import MANIFEST, generate
from sidbench.generation.lock import lock_path, output_lock
from tests.generation._nets import BlockingDenoiser, GaussDenoiser

# Loads lock.py by path (not the torch-importing package), takes the lock, reports, then waits.
HOLDER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("lock", sys.argv[1])
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)
with lock.output_lock(sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def run(out, seeds="0-5", net=None, **kw):
    return generate(net or GaussDenoiser(), out, seeds, num_steps=2, progress=False, **kw)


@pytest.fixture
def holder(tmp_path):
    """Start a real process that holds the lock of `out`; yields (process, out)."""
    procs = []

    def start(out):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, lock_module.__file__, str(out)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.mark.parametrize("name", ["imgs", "imgs.zip"])
def test_second_process_refused_naming_the_holder(tmp_path, holder, name):
    out = tmp_path / name
    proc = holder(out)
    with pytest.raises(SidbenchError, match=f"another process \\(PID {proc.pid}") as info:
        run(out)
    assert "another --out" in info.value.hint and "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.lock"]  # nothing else touched
    proc.communicate("\n")  # the holder finishes normally: lock file removed
    assert not lock_path(out).exists()
    assert run(out).written == 6


def test_lock_of_a_killed_process_is_stale(tmp_path, holder):
    out = tmp_path / "imgs.zip"
    proc = holder(out)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lock_path(out).read_text().strip() == str(proc.pid)  # left behind, its PID dead
    assert run(out).written == 6
    assert not lock_path(out).exists()


def test_leftover_lock_file_with_dead_pid_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    out = tmp_path / "imgs"
    lock_path(out).write_text(dead.stdout)
    assert run(out).written == 6 and not lock_path(out).exists()


@pytest.mark.parametrize("name", ["imgs", "imgs.zip"])
def test_two_concurrent_runs_one_wins_completely(tmp_path, name):
    """The issue's race: two runs on one .zip both exited 0 and left 4 of 60 images. Now one is refused."""
    out = tmp_path / name
    net = BlockingDenoiser()
    result = {}

    def first():
        try:
            result["summary"] = run(out, "0-59", net=net, batch_size=8)
        except BaseException as exc:  # pragma: no cover - reported below
            result["error"] = exc

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert net.entered.wait(30)
        with pytest.raises(SidbenchError, match=f"PID {os.getpid()}"):
            run(out, "0-59", batch_size=8)
    finally:
        net.release.set()
        thread.join(60)
    assert "error" not in result, result.get("error")
    assert result["summary"].written == 60
    if name.endswith(".zip"):
        with zipfile.ZipFile(out) as zf:
            members = {imgio.seed_of(n) for n in zf.namelist()} - {None}
            manifest = json.loads(zf.read(MANIFEST))
    else:
        members = imgio.done_seeds(out)
        manifest = json.loads((out / MANIFEST).read_text())
    assert members == set(range(60)) and manifest["seeds"] == "0-59"
    assert not lock_path(out).exists()


def test_lock_released_after_a_failed_run(tmp_path):
    out = tmp_path / "imgs"
    run(out, "0-1")
    with pytest.raises(SidbenchError, match="other settings"):
        run(out, "0-1", net=GaussDenoiser(mean=0.3))
    assert not lock_path(out).exists()
    with output_lock(out) as path:
        assert path == Path(f"{out}.lock") and path.read_text().strip() == str(os.getpid())


def test_lock_path_of_relative_outputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path / ".")
    (tmp_path / "sub").mkdir()
    assert lock_path(".") == tmp_path.with_name(tmp_path.name + ".lock")
    assert lock_path("sub/") == lock_path("sub/x/..") == tmp_path / "sub.lock"
    with pytest.raises(SidbenchError, match="cannot write images"):
        lock_path("/")
