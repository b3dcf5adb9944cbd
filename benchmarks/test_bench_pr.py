"""Precision/recall on N x N 2048-d features: ours (batched) vs torch-fidelity 0.4.0's (full matrices).

Run: pytest benchmarks/test_bench_pr.py --benchmark-only -p no:cacheprovider
Each implementation also runs once in a fresh subprocess to measure its time and peak extra memory
(peak RSS, VmHWM reset before the call, minus RSS before it); ratios go into `benchmark.extra_info`.
The memory bound of ours (<= 1 GiB extra at 10k x 10k) is a property and is asserted; times are not.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from sidbench.metrics import precision_recall

D = 2048

_CHILD = r"""
import json, sys, time, numpy as np, torch
torch.set_num_threads(1)
which, path_r, path_f = sys.argv[1:4]
real, fake = torch.from_numpy(np.load(path_r)), torch.from_numpy(np.load(path_f))
if which == "ours":
    from sidbench.metrics import precision_recall
else:
    from torch_fidelity.metric_prc import prc_features_to_metric
def rss_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
try:  # reset the peak (VmHWM) so it measures this call only
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
before = rss_kib("VmRSS")
t0 = time.perf_counter()
if which == "ours":
    out = precision_recall(real, fake)
    p, r = out.precision, out.recall
else:
    out = prc_features_to_metric(fake, real, verbose=False)
    p, r = out["precision"], out["recall"]
seconds = time.perf_counter() - t0
peak = rss_kib("VmHWM")
print(json.dumps({"seconds": seconds, "extra_mib": (peak - before) / 1024, "precision": p, "recall": r}))
"""


def _run_child(which, path_r, path_f):
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", _CHILD, which, str(path_r), str(path_f)], capture_output=True,
                         text=True, check=True, env=env)
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("n", [2000, pytest.param(10_000, marks=pytest.mark.slow)])
def test_precision_recall_vs_torch_fidelity(benchmark, tmp_path, n):
    rng = np.random.default_rng(n)
    real = np.maximum(rng.standard_normal((n, D)), 0).astype(np.float32)  # ReLU-like, as fc2_relu/pool are
    fake = np.maximum(rng.standard_normal((n, D)) + 0.05, 0).astype(np.float32)
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    out = benchmark.pedantic(precision_recall, args=(real, fake), rounds=1, iterations=1)
    ours = _run_child("ours", tmp_path / "real.npy", tmp_path / "fake.npy")
    theirs = _run_child("fidelity", tmp_path / "real.npy", tmp_path / "fake.npy")
    assert ours["precision"] == out.precision and ours["recall"] == out.recall
    assert abs(out.precision - theirs["precision"]) < 1e-6 and abs(out.recall - theirs["recall"]) < 1e-6
    benchmark.extra_info.update({
        "n": n, "ours_s": ours["seconds"], "fidelity_s": theirs["seconds"],
        "speedup_vs_fidelity": theirs["seconds"] / ours["seconds"],
        "ours_extra_mib": ours["extra_mib"], "fidelity_extra_mib": theirs["extra_mib"],
        "precision": out.precision, "recall": out.recall,
    })
    assert ours["extra_mib"] <= 1024  # O(batch * N) memory, never N x N
