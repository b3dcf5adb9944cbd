"""torch-fidelity's port of the 2015 TensorFlow Inception-v3 (`inception-v3-compat`).

This is the extractor of the EDM-family protocols (FID, IS, KID). We run
torch-fidelity's own module so numbers match its `calculate_metrics` exactly;
we only control where its weights come from: a local file, loaded once with
`torch.load(weights_only=True)` and handed to the module as a state dict, so
torch-fidelity's own full-pickle `torch.load` never sees the user's file.
"""

from __future__ import annotations

import os

import torch

from sidbench.errors import CheckpointError
from sidbench.metrics.extractors.base import FeatureExtractor
from sidbench.weights import load_verified_weights

TORCH_FIDELITY_NAME = "inception-v3-compat"


class InceptionV3Compat(FeatureExtractor):
    """Features "pool" (2048, torch-fidelity's '2048') and "logits" (1008, 'logits_unbiased')."""

    name = "inception-v3-compat"
    version = "1"
    input_size = 299
    feature_dims = {"pool": 2048, "logits": 1008}

    def __init__(self, weights_path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                 channels_last: bool = False):
        """`channels_last=True` runs the convolutions in NHWC: ~1.4x faster on CPU, but features then
        differ from torch-fidelity's in the last bits (~1e-6 relative), so it is off by default."""
        super().__init__(device)
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path, self.weights_sha256, self.weights_official, state = load_verified_weights(
            "inception-fidelity", weights_path)
        self.weights_path = path
        if state is None:  # the hash-pinned official file, if it ever needed a full load
            self.model = FeatureExtractorInceptionV3(
                TORCH_FIDELITY_NAME, ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path))
        else:
            try:
                self.model = _from_state_dict(state)
            except RuntimeError as exc:
                raise CheckpointError(f"{path} does not fit torch-fidelity's Inception-v3: "
                                      f"{str(exc).splitlines()[0]}",
                                      hint="pass weights-inception-2015-12-05-6726825d.pth") from None
        self.model = self.model.to(self.device)
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def _extract(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        pool, logits = self.model(images)
        return {"pool": pool, "logits": logits}

    def describe(self) -> dict:
        return {**super().describe(), "channels_last": self.channels_last}


def _from_state_dict(state: dict[str, torch.Tensor]):
    """torch-fidelity's module with weights from an already (safely) loaded state dict.

    Its constructor insists on loading a file; we give it an empty dict of our own and
    load the real weights (strictly) in place of that.
    """
    import tempfile

    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Loaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):
            return super().load_state_dict(state, strict=True)

    with tempfile.TemporaryDirectory() as tmp:
        empty = os.path.join(tmp, "empty.pth")
        torch.save({}, empty)
        return _Loaded(TORCH_FIDELITY_NAME, ["2048", "logits_unbiased"], feature_extractor_weights_path=empty)
