"""Benchmarks: one CPU thread (the machine is shared), reference implementations timed in the same run."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
