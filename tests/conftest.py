"""Shared test settings: deterministic CPU torch, quiet progress bars, no downloads."""

import os

os.environ.setdefault("SIDBENCH_NO_PROGRESS", "1")
# Hugging Face libraries (the t2i extra) must never reach the network from a test: a test that
# passes a hub id instead of a local folder fails at once instead of waiting on a download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# The test models are tiny: one thread is fastest and immune to a busy machine.
# OMP_NUM_THREADS overrides.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 0)) or 1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never read a developer's real asset cache from a test."""
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path_factory.mktemp("sidbench-cache")))
