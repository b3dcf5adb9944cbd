"""The EDM-family image suites: CIFAR-10, ImageNet 64, FFHQ 64, AFHQv2 64.

Facts of the data and the teacher only (image counts, teachers, Heun steps, the
dropout each released teacher was trained with, its augment layer), from EDM's
README and dataset_tool conventions. Method settings (SiD's lr, alpha, EMA,
dropout of the distilled nets, augmentation p, ...) live in `recipes/*.yaml`.
sha256 digests of the EDM zips are not published, so they stay unpinned; the image
count, resolution and file name are always checked, which is what refuses FFHQ fed
to AFHQv2.
"""

from __future__ import annotations

from sidbench.suites.base import DatasetIdentity, Suite, TeacherSpec

VERSION = "1.0.0"

# Metric protocols shared by the suites (names resolved by sidbench.metrics.protocols).
_FID = ("edm-fid50k", "sid-fid50k")
_CIFAR_PROTOCOLS = (*_FID, "is-10split", "kid-100x1000", "pr-vgg16")
_IMAGENET_PROTOCOLS = (*_FID, "is-10split", "pr-inception-adm")
_FACES_PROTOCOLS = (*_FID, "kid-100x1000")

_CIFAR_DATA = dict(filename="cifar10-32x32.zip", num_images=50_000, resolution=32, channels=3)
_CIFAR_SETTINGS = {
    "dataset_alternatives": ["cifar-10-python.tar.gz"],  # the python tarball holds the same 50k images
    "teacher_dropout": 0.13,  # what the released teacher was trained with
    "augment_dim": 9,  # the teacher's map_augment inputs
}

CIFAR10_UNCOND = Suite(
    name="cifar10-uncond",
    version=VERSION,
    description="CIFAR-10 32x32 unconditional; EDM DDPM++ (VP arch, EDM precond) teacher, Heun 18 steps",
    dataset=DatasetIdentity(name="cifar10-train", label_dim=0, **_CIFAR_DATA),
    teacher=TeacherSpec(asset="edm-cifar10-uncond", heun_steps=18, architecture="SongUNet"),
    ref_stats="ref-cifar10",
    protocols=_CIFAR_PROTOCOLS,
    settings={**_CIFAR_SETTINGS, "teacher_fid": 1.97, "teacher_nfe": 35},
)

CIFAR10_COND = Suite(
    name="cifar10-cond",
    version=VERSION,
    description="CIFAR-10 32x32 class-conditional; EDM DDPM++ (VP arch, EDM precond) teacher, Heun 18 steps",
    dataset=DatasetIdentity(name="cifar10-train", label_dim=10, **_CIFAR_DATA),
    teacher=TeacherSpec(asset="edm-cifar10-cond", heun_steps=18, architecture="SongUNet"),
    ref_stats="ref-cifar10",
    protocols=_CIFAR_PROTOCOLS,
    settings={**_CIFAR_SETTINGS, "teacher_fid": 1.79, "teacher_nfe": 35},
)

IMAGENET64_COND = Suite(
    name="imagenet64-cond",
    version=VERSION,
    description="ImageNet 64x64 class-conditional; EDM ADM teacher, Heun 40 steps",
    dataset=DatasetIdentity(name="imagenet-64x64", filename="imagenet-64x64.zip", num_images=1_281_167,
                            resolution=64, channels=3, label_dim=1000),
    teacher=TeacherSpec(asset="edm-imagenet64", heun_steps=40, architecture="DhariwalUNet"),
    ref_stats="ref-imagenet64",
    protocols=_IMAGENET_PROTOCOLS,
    settings={
        "teacher_dropout": 0.10,
        "augment_dim": 0,  # the ADM teacher has no augment layer
        "pr_ref_stats": "ref-imagenet64-adm",  # ADM VIRTUAL batch, for precision/recall
        "teacher_fid": 2.44,
        "teacher_nfe": 79,
        # EDM's longer ImageNet samplers, selectable by name.
        "teacher_samplers": {
            "heun-40": {"num_steps": 40},
            "heun-256": {"num_steps": 256, "fid": 2.32, "nfe": 511},
            "stochastic-256": {"num_steps": 256, "S_churn": 40, "S_min": 0.05, "S_max": 50,
                               "S_noise": 1.003, "fid": 1.36, "nfe": 511},
        },
    },
)

_FACES_SETTINGS = {"augment_dim": 9, "teacher_nfe": 79}

FFHQ64 = Suite(
    name="ffhq64",
    version=VERSION,
    description="FFHQ 64x64 unconditional; EDM DDPM++ teacher, Heun 40 steps",
    dataset=DatasetIdentity(name="ffhq-64x64", filename="ffhq-64x64.zip", num_images=70_000,
                            resolution=64, channels=3),
    teacher=TeacherSpec(asset="edm-ffhq64", heun_steps=40, architecture="SongUNet"),
    ref_stats="ref-ffhq64",
    protocols=_FACES_PROTOCOLS,
    settings={
        **_FACES_SETTINGS,
        "teacher_dropout": 0.05,
        "teacher_fid": 2.39,
    },
)

AFHQV2_64 = Suite(
    name="afhqv2-64",
    version=VERSION,
    description="AFHQv2 64x64 unconditional; EDM DDPM++ teacher, Heun 40 steps",
    dataset=DatasetIdentity(name="afhqv2-64x64", filename="afhqv2-64x64.zip", num_images=15_803,
                            resolution=64, channels=3),
    teacher=TeacherSpec(asset="edm-afhqv2-64", heun_steps=40, architecture="SongUNet"),
    ref_stats="ref-afhqv2-64",
    protocols=_FACES_PROTOCOLS,
    settings={
        **_FACES_SETTINGS,
        "teacher_dropout": 0.25,  # SiD distils it with 0.05: a recipe setting
        "teacher_fid": 1.96,
    },
)

SUITES = (CIFAR10_UNCOND, CIFAR10_COND, IMAGENET64_COND, FFHQ64, AFHQV2_64)
