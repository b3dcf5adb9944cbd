"""Library versions and accelerator facts: what `sidbench env` prints and result records store."""

from __future__ import annotations

import platform

from sidbench import __version__

_OPTIONAL = ("torch_fidelity", "cleanfid", "open_clip", "torchvision", "diffusers", "transformers")


def environment() -> dict:
    """Versions of sidbench, python, torch, numpy and optional libraries; CUDA devices; CPU threads."""
    import numpy
    import torch

    info = {
        "sidbench": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu_threads": torch.get_num_threads(),
    }
    for mod in _OPTIONAL:
        try:
            info[mod] = __import__(mod).__version__
        except Exception:
            info[mod] = None
    return info
