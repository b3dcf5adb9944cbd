"""digits-t2i: the text-to-image suite that runs on a CPU, through SiD-LSG's code paths.

The digits images (16x16, 1,797) captioned by templates ("a handwritten digit seven", "the number 7",
"a picture of the digit seven"); a text-conditional eps-prediction UNet (diffusers'
UNet2DConditionModel, pixel space) with a small CLIPTextModel and a word tokenizer, trained together by
`sidbench train-teacher --suite digits-t2i` (the `ddpm-t2i` method on the shared trainer) under Stable
Diffusion's 1000-step scaled-linear schedule, and shipped in `assets/digits-t2i/teacher/`. So t_init
625 and t in [20, 980) mean what they mean for SD 1.5, and the SiD-LSG code that distils SD distils
this teacher unchanged (there is no VAE: the latents are the pixels).

Metrics: FD in the digits classifier's feature space against all 1,797 digits (`digits-fd`, the
digits suite's reference statistics) and the prompt alignment `digits-t2i-alignment`: the digits
classifier's mean probability of the digit each caption asks for. It is a different metric from CLIP
score (no CLIP model is involved), named so. Evaluation caption i names digit i % 10 (template
(i // 10) % 3) and is rendered from seed i.
"""

from __future__ import annotations

from sidbench.data.captions import digit_vocabulary
from sidbench.nets.ddpm import SD15_SCHEDULE
from sidbench.packaged import packaged_path
from sidbench.suites.base import DatasetIdentity, Suite, TeacherSpec

ASSET_DIR = packaged_path("digits-t2i", must_exist=False)
TEACHER_DIR = ASSET_DIR / "teacher"
MAX_PROMPT_TOKENS = 10  # <bos> + at most 6 words + <eos>, padded

# ~1.7M parameters (UNet 1.66M + text encoder 0.03M), ~7 MB float32.
TEACHER_NETWORK = {
    "class_name": "EpsDenoiser",
    "init_kwargs": {
        "img_resolution": 16,
        "img_channels": 1,
        "label_dim": 0,
        "use_fp16": False,
        "schedule": dict(SD15_SCHEDULE),
        "unet": {
            "sample_size": 16, "in_channels": 1, "out_channels": 1,
            "block_out_channels": [32, 64, 64],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            "layers_per_block": 1, "cross_attention_dim": 32, "attention_head_dim": 8, "norm_num_groups": 16,
        },
        "text_encoder": {
            "vocab_size": 4 + len(digit_vocabulary()), "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": MAX_PROMPT_TOKENS,
            "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "projection_dim": 32,
        },
        "tokenizer": {"kind": "words", "vocab": digit_vocabulary(), "max_length": MAX_PROMPT_TOKENS},
    },
}

# Defaults of `sidbench train-teacher --suite digits-t2i` (what made the shipped teacher).
TEACHER_TRAINING = {
    "kimg": 96,
    "batch_size": 32,
    "lr": 1e-3,
    "lr_rampup_kimg": 5,
    "ema_halflife_kimg": 10,
    "ema_rampup": 0.05,
    "prompt_dropout": 0.1,
}

SUITE = Suite(
    name="digits-t2i",
    version="1.0.0",
    description="scikit-learn digits 16x16 captioned by digit name; shipped text-conditional eps-UNet "
                "teacher",
    dataset=DatasetIdentity(name="sklearn-digits", filename=None, num_images=1_797, resolution=16,
                            channels=1, label_dim=10),
    teacher=TeacherSpec(asset=None, packaged="digits-t2i/teacher", heun_steps=0,
                        preconditioner="EpsDenoiser"),
    ref_stats="digits/ref-stats.npz",
    protocols=("digits-fd", "digits-t2i-alignment"),
    settings={
        "text_to_image": True,
        "feature_extractor": "digits-classifier",
        "prompts": "builtin:digits",  # the training prompts (any caption list may replace them)
        "eval_captions": "builtin:digits",
        "label_captions": "digits",  # teacher training: captions from the image labels
        "latent_shape": [1, 16, 16],
        "num_eval_images": 2_000,
        "teacher_network": TEACHER_NETWORK,
        "teacher_training": TEACHER_TRAINING,
        "teacher_method": "ddpm-t2i",
        "teacher_sampler": {"sampler": "ddim", "num_steps": 25, "guidance": 2.0},
    },
)
