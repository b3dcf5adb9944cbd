"""toy2d: a 2-D Gaussian mixture with an exact denoiser, for fast tests of methods and samplers.

Points are 2-channel 1x1 images ([B, 2, 1, 1]); the teacher is a small MLP
(`sidbench.nets.mlp.MLPDenoiser`) under EDM preconditioning, trained in seconds by
`sidbench train-teacher --suite toy2d`. Reference statistics are exact (the
mixture's mean and covariance), so no reference file is needed.
"""

from __future__ import annotations

from sidbench.suites.base import DatasetIdentity, Suite, TeacherSpec

# The mixture: 8 equal Gaussians on a circle of radius 0.7, std 0.05 (data in about [-1, 1]).
MIXTURE = {"num_components": 8, "radius": 0.7, "std": 0.05}

TEACHER_NETWORK = {
    "class_name": "EDMPrecond",
    "init_kwargs": {
        "img_resolution": 1,
        "img_channels": 2,
        "label_dim": 0,
        "use_fp16": False,
        "sigma_min": 0,
        "sigma_max": "inf",
        "sigma_data": 0.5,
        "model_type": "MLPDenoiser",
        "augment_dim": 0,
        "hidden": 128,
        "num_layers": 3,
        "noise_channels": 32,
        "dropout": 0.0,
    },
}

TEACHER_TRAINING = {
    "kimg": 200,
    "batch_size": 256,
    "lr": 2e-3,
    "lr_rampup_kimg": 2,
    "ema_halflife_kimg": 5,
    "ema_rampup": 0.05,
    "label_dropout": 0.0,
    "P_mean": -1.2,
    "P_std": 1.2,
}


def make_mixture():
    """The suite's mixture (`sidbench.data.toy2d.Toy2DMixture`): exact samples, score and denoiser."""
    from sidbench.data.toy2d import default_mixture

    return default_mixture(**MIXTURE)


SUITE = Suite(
    name="toy2d",
    version="1.0.0",
    description="2-D Gaussian mixture (8 modes on a circle) with exact denoiser; MLP teacher; fast tests",
    dataset=DatasetIdentity(name="toy2d-mixture8", filename=None, num_images=0, resolution=1, channels=2),
    teacher=TeacherSpec(asset=None, packaged=None, heun_steps=18,
                        architecture=TEACHER_NETWORK["init_kwargs"]["model_type"]),
    ref_stats=None,  # exact: mixture mean and covariance
    protocols=(),  # no named protocol yet: FD against the exact mixture mean/covariance (settings)
    settings={
        "mixture": MIXTURE,
        "exact_reference": True,
        "teacher_dropout": TEACHER_NETWORK["init_kwargs"]["dropout"],
        "augment_dim": 0,
        "teacher_network": TEACHER_NETWORK,
        "teacher_training": TEACHER_TRAINING,
    },
)
