"""COCO-2014 text-to-image suite with Stable Diffusion 1.5 (SiD-LSG's setting).

The evaluation follows GigaGAN's protocol as used by SiD-LSG: 30,000 fixed
captions (the `coco-captions` asset, caption i generated with seed i), FID-30k
in clean-fid "clean" mode against all 40,504 val2014 images (center crop, 256,
LANCZOS), and the CLIP score with open_clip ViT-g-14. SD 1.5 is given by path
(diffusers layout); it is not one file, so it has no pinned digest.
"""

from __future__ import annotations

from sidbench.suites.base import DatasetIdentity, Suite, TeacherSpec

COCO2014_SD15 = Suite(
    name="coco2014-sd15",
    version="1.0.0",
    description="COCO-2014 val, 30k captions; Stable Diffusion 1.5 teacher (SiD-LSG), FID-30k clean + CLIP",
    dataset=DatasetIdentity(name="coco2014-val", filename="val2014", num_images=40_504, resolution=256,
                            channels=3),
    teacher=TeacherSpec(asset=None, packaged=None, heun_steps=0, preconditioner=None),  # diffusers, by path
    ref_stats=None,  # computed from val2014 by `sidbench refstats` under coco2014-fid30k-clean
    protocols=("coco2014-fid30k-clean", "clip-score-vitg14"),
    settings={
        "teacher": "stable-diffusion-v1-5",
        "teacher_format": "diffusers",  # UNet2DConditionModel + CLIP text encoder + VAE, given by path
        "captions_asset": "coco-captions",
        "num_captions": 30_000,
        "latent_shape": [4, 64, 64],
        "image_resolution": 512,
        "eval_resolution": 256,
        "clip_prompt_prefix": "A photo depicts ",
        # SiD-LSG defaults
        "t_init": 625,
        "tmin": 20,
        "tmax": 980,
        "lr": 1e-6,
        "batch": 512,
        "batch_gpu": 1,
        "alpha": 1.0,
        "ema_mimg": 0.05,
        "cfg_kappa": 1.5,
        "empty_prompt_dropout": 0.1,
        "lsg": 1.0,
        "published": {"1.5": {"fid": 8.71, "clip": 0.302}, "2.0": {"fid": 9.56, "clip": 0.313},
                      "3.0": {"fid": 13.21, "clip": 0.314}, "4.5": {"fid": 16.59, "clip": 0.317}},
    },
)
