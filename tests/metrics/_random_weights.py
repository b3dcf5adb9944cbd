"""Random-weight feature extractors saved as local files, so metric tests need no downloads.

Convolutions are He-scaled (kaiming normal, fan_in, ReLU gain) and batch norms
are identity: with PyTorch's default init the 2015 Inception's features shrink
to ~1e-8 and every metric is ~0, which would let a broken pipeline pass.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn


def _he_init_(module: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
        elif isinstance(m, nn.Linear):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / math.sqrt(m.in_features))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


def random_inception_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict in the layout torch-fidelity's FeatureExtractorInceptionV3 loads (strict)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # skip the file's (empty) weights
            return None

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        net = _Skeleton("skeleton", ["2048"], feature_extractor_weights_path=str(empty))
    _he_init_(net, seed)
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def save_random_inception(path: str | Path, seed: int = 0) -> Path:
    """Write random He-scaled Inception weights (~95 MB) where torch-fidelity can load them."""
    path = Path(path)
    torch.save(random_inception_state_dict(seed), path)
    return path


def save_random_vgg16(path: str | Path, seed: int = 0) -> Path:
    """torchvision VGG-16 with He-scaled random weights (~530 MB: use only in slow tests)."""
    import torchvision

    net = torchvision.models.vgg16()
    _he_init_(net, seed)
    torch.save(net.state_dict(), path)
    return Path(path)


class TinyCNN(nn.Module):
    """A cheap random extractor network for pipeline tests (uint8 in, dict of features out)."""

    def __init__(self, channels: int = 3, dim: int = 16, classes: int = 10, seed: int = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, dim, 3, stride=2, padding=1)
        self.head = nn.Linear(dim, classes)
        _he_init_(self, seed)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images.float() / 127.5 - 1
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        pool = x.mean(dim=(2, 3))
        return {"pool": pool, "logits": self.head(pool)}


def make_malicious_pickle(path: str | Path, marker: str | Path) -> Path:
    """A .pth file whose unpickling would create `marker` (used to prove we never unpickle it)."""
    import pickle

    class _Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with open(path, "wb") as f:
        pickle.dump({"conv.weight": _Evil()}, f)
    return Path(path)


class _FakeCleanFIDLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 5, stride=4)
        self.fc = nn.Linear(8, 2048)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class FakeCleanFIDInception(nn.Module):
    """NVIDIA's TorchScript layout (clean-fid's `inception-2015-12-05.pt`): `layers` takes the
    normalised 299x299 input and gives 2048-d features. Random and tiny: no download."""

    def __init__(self):
        super().__init__()
        self.layers = _FakeCleanFIDLayers()

    def forward(self, x, return_features: bool = False):
        return self.layers(x)


def save_fake_cleanfid_inception(path: str | Path, seed: int = 0) -> Path:
    """A scripted FakeCleanFIDInception at `path` (weights drawn under `seed`)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        torch.jit.script(FakeCleanFIDInception().eval()).save(str(path))
    return Path(path)
