"""COCO-2014 text-to-image suites with Stable Diffusion 1.5 and 2.1-base (SiD-LSG's settings).

The evaluation follows GigaGAN's protocol as used by SiD-LSG: 30,000 fixed
captions (the `coco-captions` asset, caption i generated with seed i), FID-30k
in clean-fid "clean" mode against all 40,504 val2014 images (center crop, 256,
LANCZOS; statistics nobody publishes, so `sidbench refstats` computes them once into
`$SIDBENCH_CACHE/coco2014-val2014-fid30k-clean.npz` with a sha256 sidecar), and the
CLIP score with open_clip ViT-g-14. SD 1.5 is given by path (diffusers layout); it
is not one file, so it has no pinned digest. SiD-LSG's own settings (t_init 625,
kappa, lr, ...) belong to its recipes, not to the suite.

`coco2014-sd21base` is the same data and protocols with Stable Diffusion 2.1-base
(stabilityai/stable-diffusion-2-1-base: epsilon prediction at 512, OpenCLIP ViT-H text
encoder) as the teacher: another teacher makes another suite, so its numbers are never
ranked with SD 1.5's.
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
    ref_stats=None,  # not published: computed once from val2014 into the cache (ref_stats_cache below)
    protocols=("coco2014-fid30k-clean", "clip-score-vitg14"),
    settings={
        "text_to_image": True,  # prompts condition the teacher; the trainer loads it as a T2ITeacher
        "teacher": "stable-diffusion-v1-5",
        "teacher_format": "diffusers",  # UNet2DConditionModel + CLIP text encoder + VAE, given by path
        "captions_asset": "coco-captions",
        "num_captions": 30_000,
        "latent_shape": [4, 64, 64],
        "image_resolution": 512,
        "eval_resolution": 256,
        "clip_prompt_prefix": "A photo depicts ",
        # `sidbench refstats VAL2014_DIR --suite coco2014-sd15` computes the FID reference once, under
        # coco2014-fid30k-clean, into $SIDBENCH_CACHE/<this name> with its sha256 (suites/ref_cache.py)
        "ref_stats_cache": "coco2014-val2014-fid30k-clean.npz",
    },
)

COCO2014_SD21BASE = Suite(
    name="coco2014-sd21base",
    version="1.0.0",
    description="COCO-2014 val, 30k captions; Stable Diffusion 2.1-base teacher (SiD-LSG), "
                "FID-30k clean + CLIP",
    dataset=COCO2014_SD15.dataset,
    teacher=COCO2014_SD15.teacher,  # diffusers, by path
    ref_stats=None,  # the same cached val2014 statistics as coco2014-sd15 (settings: ref_stats_cache)
    protocols=COCO2014_SD15.protocols,
    settings={**COCO2014_SD15.settings, "teacher": "stable-diffusion-2-1-base"},
)
