"""The embedded default suite: scikit-learn's handwritten digits at 16x16, with a shipped teacher.

Everything a real suite has, small enough for a laptop CPU: a real dataset that
ships with a package (1,797 images, 10 classes), a class-conditional DDPM++
teacher trained by `sidbench train-teacher --suite digits` and shipped in
`assets/digits/teacher/`, and a digits classifier (`digits_classifier.py`) as the
feature extractor for FD / IS / KID / P-R, with reference statistics computed
on all 1,797 images and shipped as `assets/digits/ref-stats.npz`.

Heun steps: 18 (35 NFE), as EDM uses at 32x32: the ODE is no harder at 16x16 with the
same sigma schedule. Measured on the shipped teacher (1,000 images, seeds 0-999, FD in
classifier feature space vs all 1,797 digits): 10 steps 18.75, 18 steps 15.30, 32 steps
15.14; classifier accuracy w.r.t. the conditioning label 98.6% / 99.2% / 99.4%.
"""

from __future__ import annotations

from pathlib import Path

from sidbench.packaged import packaged_path
from sidbench.suites.base import DatasetIdentity, Suite, TeacherSpec

ASSET_DIR = packaged_path("digits", must_exist=False)
TEACHER_DIR = ASSET_DIR / "teacher"
REF_STATS = ASSET_DIR / "ref-stats.npz"

# EDMPrecond + small class-conditional DDPM++ (SongUNet) at 16x16; ~1.26M parameters, ~5 MB float32.
TEACHER_NETWORK = {
    "class_name": "EDMPrecond",
    "init_kwargs": {
        "img_resolution": 16,
        "img_channels": 1,
        "label_dim": 10,
        "use_fp16": False,
        "sigma_min": 0,
        "sigma_max": "inf",
        "sigma_data": 0.5,
        "model_type": "SongUNet",
        "augment_dim": 0,
        "model_channels": 32,
        "channel_mult": [1, 2, 2],
        "num_blocks": 1,
        "attn_resolutions": [8],
        "dropout": 0.1,
        "embedding_type": "positional",
        "encoder_type": "standard",
        "decoder_type": "standard",
        "channel_mult_noise": 1,
        "resample_filter": [1, 1],
    },
}

# Defaults of `sidbench train-teacher --suite digits` (what made the shipped teacher).
TEACHER_TRAINING = {
    "kimg": 160,
    "batch_size": 32,
    "lr": 1e-3,
    "lr_rampup_kimg": 5,
    "ema_halflife_kimg": 10,
    "ema_rampup": 0.05,
    "label_dropout": 0.0,
    "P_mean": -1.2,
    "P_std": 1.2,
}

SUITE = Suite(
    name="digits",
    version="1.0.0",
    description="scikit-learn digits 16x16 (1,797 images, 10 classes); shipped class-conditional teacher",
    dataset=DatasetIdentity(name="sklearn-digits", filename=None, num_images=1_797, resolution=16,
                            channels=1, label_dim=10),
    teacher=TeacherSpec(asset=None, packaged="digits/teacher", heun_steps=18,
                        architecture=TEACHER_NETWORK["init_kwargs"]["model_type"]),
    ref_stats="digits/ref-stats.npz",
    protocols=("digits-fd", "digits-is", "digits-kid", "digits-pr"),
    settings={
        "feature_extractor": "digits-classifier",
        "teacher_dropout": TEACHER_NETWORK["init_kwargs"]["dropout"],  # what the shipped teacher trained with
        "augment_dim": 0,
        "num_eval_images": 2_000,
        "teacher_network": TEACHER_NETWORK,
        "teacher_training": TEACHER_TRAINING,
    },
)


def build_ref_stats(path: str | Path = REF_STATS) -> Path:
    """Re-create the shipped reference statistics: classifier features of all 1,797 digits.

    float64 mean and unbiased covariance (EDM's convention), written with the metrics
    package's `save_reference` (EDM-compatible keys plus provenance in `meta_json`).
    """
    import numpy as np
    import torch

    from sidbench.data.digits import DigitsDataset
    from sidbench.metrics.extractors.digits_classifier import classifier_sha256, load_classifier
    from sidbench.metrics.reference import save_reference

    dataset = DigitsDataset(resolution=16)
    images, _ = dataset.arrays()
    model = load_classifier()
    with torch.no_grad():
        feats = torch.cat([model(torch.from_numpy(np.array(images[i:i + 256])))["features"]
                           for i in range(0, len(images), 256)]).double().numpy()
    stats = {"mu": feats.mean(0), "sigma": np.cov(feats, rowvar=False, ddof=1), "num_images": len(feats)}
    meta = {"dataset": dataset.name, "dataset_sha256": dataset.identity_sha256(),
            "extractor": "digits-classifier", "extractor_sha256": classifier_sha256(),
            "feature_key": "features", "protocol": "digits-fd"}
    save_reference(path, stats, meta=meta, unbiased=True)
    return Path(path)
