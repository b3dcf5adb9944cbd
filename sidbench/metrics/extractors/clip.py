"""open_clip image/text embeddings for CLIP score (COCO protocol: ViT-g-14 laion2b_s12b_b42k, fp32).

The model is built with `pretrained=None` (open_clip never downloads) and a local
state dict is loaded with `weights_only=True`. Images go through open_clip's own
evaluation preprocessing (resize shortest side, center crop, normalise) as PIL
images, like GigaGAN's evaluation; texts go through open_clip's tokenizer (truncated, EOT
kept) exactly as given: the CLIP-score metric puts the protocol's prefix ("A photo depicts ")
before each caption, so the prefix lives in one place, the protocol.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from sidbench.errors import AssetError, CheckpointError
from sidbench.fileio import sha256_file
from sidbench.metrics.extractors.base import FeatureExtractor, tf32_disabled
from sidbench.weights import load_state_dict_safely, verify_weights


class ClipExtractor(FeatureExtractor):
    """Feature "image" (unnormalised); `encode_text` gives the text side."""

    version = "1"

    def __init__(
        self,
        model_name: str = "ViT-g-14",
        weights_path: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
    ):
        super().__init__(device)
        import open_clip

        if model_name == "ViT-g-14":
            path, self.weights_sha256, self.weights_official = verify_weights("clip-vitg14", weights_path)
            state = load_state_dict_safely(path)
        elif weights_path is None:
            raise AssetError(f"open_clip model {model_name}: no weights file given",
                             hint="pass the path of a local state dict (weights_path / --clip-weights)")
        else:
            path = weights_path
            state = load_state_dict_safely(path)
            self.weights_sha256, self.weights_official = sha256_file(path), False
        self.name = "open-clip-vitg14" if model_name == "ViT-g-14" else f"open-clip-{model_name}"
        self.model_name = model_name
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path} does not fit open_clip {model_name}: {str(exc).splitlines()[0]}",
                                  hint="pass the state dict of the model the protocol names") from None
        self.model = model.float().eval().to(self.device)
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(model_name)
        size = model.visual.image_size
        self.input_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.feature_dims = {"image": int(getattr(model.visual, "output_dim", 0) or 0)}

    def preprocess_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N,3,H,W] -> open_clip's normalised float input, via PIL as open_clip expects."""
        hwc = images.permute(0, 2, 3, 1).cpu().numpy()
        return torch.stack([self.preprocess(Image.fromarray(np.ascontiguousarray(im))) for im in hwc])

    def _extract(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.preprocess_images(images).to(self.device)
        return {"image": self.model.encode_image(x)}

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unnormalised text embeddings of each text, as given."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        with torch.no_grad(), tf32_disabled():
            return self.model.encode_text(tokens).float()

    def describe(self) -> dict:
        return {**super().describe(), "model": self.model_name}
