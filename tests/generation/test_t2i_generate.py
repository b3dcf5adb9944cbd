"""`sidbench generate` / `eval --generator` for text-to-image networks: image s is made from caption s.

Oracles are written out with diffusers as the independent reference: the one-step image is
x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) of the UNet's eps at t_init on x_t = sqrt(1 - abar) z,
abar from diffusers' DDPMScheduler; the teacher row is diffusers' DDIMScheduler (trailing steps,
eta 0) with classifier-free guidance, and for a diffusers folder diffusers' own
StableDiffusionPipeline. The networks are a digits-t2i teacher trained for a few steps and a
SiD-LSG generator saved directly (a perturbed copy of its UNet, role "t2i-generator").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import sidbench  # noqa: E402
from sidbench.data.captions import digit_captions  # noqa: E402
from sidbench.metrics.protocols import DIGITS_T2I_CAPTIONS_SHA256  # noqa: E402
from tests._cli import run_cli  # noqa: E402

T_INIT = 625


def _one_line(err: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err, err


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("t2i") / "teacher"
    sidbench.train_teacher(suite="digits-t2i", out=out, kimg=0.064, progress=False)
    return out


def _save_generator(teacher: Path, out: Path, **source) -> Path:
    """The teacher's UNet with seeded noise added, saved as a SiD-LSG generator of `teacher`."""
    from sidbench.nets.native import load_network, read_network_record, save_network

    net, _ = load_network(teacher).without_text_encoder()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            scale = p.std() if p.numel() > 1 else p.abs()
            p.add_(0.05 * scale * torch.randn(p.shape, generator=g))
    record = read_network_record(teacher)
    src = {"suite": "digits-t2i", "t_init": T_INIT, "teacher_path": str(teacher),
           "teacher_sha256": record["weights_sha256"], **source}
    save_network(net, {"class_name": "EpsDenoiser", "init_kwargs": net.init_kwargs}, out, source=src,
                 role="t2i-generator")
    return out


@pytest.fixture(scope="module")
def generator(teacher) -> Path:
    return _save_generator(teacher, teacher.parent / "generator")


def _pngs(folder: Path, seeds) -> np.ndarray:
    """int64 [N, C, H, W] pixels of `{seed:06d}.png`, decoded by PIL."""
    from PIL import Image

    def one(path: Path) -> np.ndarray:
        a = np.asarray(Image.open(path))
        return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)

    return np.stack([one(folder / f"{s:06d}.png") for s in seeds]).astype(np.int64)


def _quantize(x: torch.Tensor) -> np.ndarray:
    return (x.double() * 127.5 + 128).clip(0, 255).to(torch.uint8).numpy().astype(np.int64)


def _ddpm_abar() -> torch.Tensor:
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                          beta_schedule="scaled_linear")
    return sched.alphas_cumprod.to(torch.float32)


def _z(seed: int, shape) -> torch.Tensor:
    return torch.randn(list(shape), generator=torch.Generator().manual_seed(seed))


def test_generator_pngs_are_the_one_step_formula_with_caption_s(generator, teacher, tmp_path, capsys):
    from sidbench.nets.native import load_network
    from sidbench.nets.t2i import load_t2i_teacher

    seeds = [3, 5, 12]
    out = tmp_path / "g"
    rc, stdout, err = run_cli(["generate", "--network", generator, "--out", out, "--seeds", "3,5,12"], capsys)
    assert rc == 0, err
    assert "3 images written" in stdout and "1 NFE/image" in stdout

    unet = load_network(generator).model
    t = load_t2i_teacher(teacher)
    abar = _ddpm_abar()[T_INIT]
    caps = digit_captions(13)
    want = []
    with torch.no_grad():
        for s in seeds:
            x_t = (1 - abar).sqrt() * _z(s, (1, 1, 16, 16))
            eps = unet(x_t, torch.tensor([T_INIT]), encoder_hidden_states=t.prompts.encode([caps[s]])).sample
            want.append(_quantize((x_t - (1 - abar).sqrt() * eps) / abar.sqrt())[0])
    got = _pngs(out, seeds)
    assert np.abs(got - np.stack(want)).max() <= 1  # batch-of-3 vs one-at-a-time float rounding
    # caption s, not caption i of the batch: seed 12 with caption 2 would be another image
    assert np.abs(got[2] - _pngs(out, [12])[0]).max() == 0

    manifest = json.loads((out / "generate.json").read_text())
    st = manifest["settings"]
    assert (st["sampler"], st["t_init"], st["guidance"]) == ("onestep", T_INIT, None)
    assert st["captions_sha256"] == DIGITS_T2I_CAPTIONS_SHA256 and st["teacher_sha256"] == t.info["sha256"]
    assert manifest["seeds"] == "3,5,12" and manifest["network"]["role"] == "t2i-generator"

    # resumable: extending keeps the three images and makes only the new ones
    extend = ["generate", "--network", generator, "--out", out, "--seeds", "3,5,12,13"]
    rc, stdout, err = run_cli(extend, capsys)
    assert rc == 0 and "1 images written, 3 already done" in stdout, err
    # another caption list makes other images: refused, nothing written
    caps_file = tmp_path / "caps.txt"
    caps_file.write_text("".join(f"{c}\n" for c in reversed(digit_captions(20))))
    rc, _, err = run_cli(["generate", "--network", generator, "--out", out, "--seeds", "3-14",
                          "--captions", caps_file], capsys)
    assert rc == 1 and "captions_sha256" in err and not (out / "000014.png").exists()
    _one_line(err)


def test_teacher_ddim_with_guidance_is_diffusers_ddim(teacher, tmp_path, capsys):
    from diffusers import DDIMScheduler

    from sidbench.nets.t2i import load_t2i_teacher

    out = tmp_path / "t"
    argv = ["generate", "--network", teacher, "--out", out, "--seeds", "0-1", "--num-steps", "4",
            "--guidance", "3"]
    rc, stdout, err = run_cli(argv, capsys)
    assert rc == 0 and "8 NFE/image" in stdout, err

    t = load_t2i_teacher(teacher)
    sched = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                          beta_schedule="scaled_linear", timestep_spacing="trailing", set_alpha_to_one=True,
                          clip_sample=False, steps_offset=1)
    sched.set_timesteps(4)
    assert sched.timesteps.tolist() == [999, 749, 499, 249]
    unet = t.denoiser.model
    with torch.no_grad():
        cond = t.prompts.encode(digit_captions(2))
        uncond = t.prompts.encode(["", ""])
        x = torch.cat([_z(0, (1, 1, 16, 16)), _z(1, (1, 1, 16, 16))])
        for step in sched.timesteps:
            e_u = unet(x, step, encoder_hidden_states=uncond).sample
            e_c = unet(x, step, encoder_hidden_states=cond).sample
            x = sched.step(e_u + 3.0 * (e_c - e_u), step, x, eta=0.0).prev_sample
    assert np.abs(_pngs(out, [0, 1]) - _quantize(x)).max() <= 1
    st = json.loads((out / "generate.json").read_text())["settings"]
    assert (st["sampler"], st["num_steps"], st["guidance"]) == ("ddim", 4, 3.0)

    # the suite's teacher_sampler is the default (25 steps, guidance 2), and guidance is part of the output
    rc, _, err = run_cli([*argv[:-4], "--num-steps", "4", "--guidance", "2"], capsys)
    assert rc == 1 and "guidance: 3.0 -> 2.0" in err
    _one_line(err)


def test_diffusers_folder_is_sampled_like_stable_diffusion_pipeline(tmp_path, capsys):
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from tests.t2i._tiny_sd import make_tiny_sd

    sd = make_tiny_sd(tmp_path / "sd")
    caps = tmp_path / "caps.txt"
    caps.write_text("a cat\ncat cat\n")
    out = tmp_path / "o"
    rc, _, err = run_cli(["generate", "--network", sd, "--captions", caps, "--seeds", "0-1",
                          "--num-steps", "2", "--guidance", "3", "--out", out], capsys)
    assert rc == 0, err

    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(sd / "vae"), unet=UNet2DConditionModel.from_pretrained(sd / "unet"),
        text_encoder=CLIPTextModel.from_pretrained(sd / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(sd / "tokenizer"),
        scheduler=DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                beta_schedule="scaled_linear", timestep_spacing="trailing",
                                set_alpha_to_one=True, clip_sample=False, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    latents = torch.cat([_z(0, (1, 4, 8, 8)), _z(1, (1, 4, 8, 8))])
    with torch.no_grad():
        images = pipe(["a cat", "cat cat"], num_inference_steps=2, guidance_scale=3.0, latents=latents,
                      output_type="pt", eta=0.0).images  # [0, 1]
    want = (images.double() * 255).round().numpy().astype(np.int64)
    got = _pngs(out, [0, 1])
    assert got.shape == (2, 3, 16, 16) and np.abs(got - want).max() <= 1
    manifest = json.loads((out / "generate.json").read_text())
    assert manifest["network"]["teacher"]["kind"] == "diffusers"


def test_eval_generator_renders_caption_s_and_passes_the_captions_to_the_metrics(generator, tmp_path, capsys):
    out = tmp_path / "g"
    assert run_cli(["generate", "--network", generator, "--out", out, "--seeds", "0-19"], capsys)[0] == 0
    on_the_fly = sidbench.evaluate(generator=generator, suite="digits-t2i", num_images=20)
    from_files = sidbench.evaluate(images=out, suite="digits-t2i")  # the suite's built-in captions
    for name in ("fid", "prompt_alignment"):
        assert on_the_fly["metrics"][name]["value"] == pytest.approx(from_files["metrics"][name]["value"],
                                                                     rel=1e-12)
    pa = on_the_fly["metrics"]["prompt_alignment"]
    assert pa["captions_sha256"] == DIGITS_T2I_CAPTIONS_SHA256
    assert pa["protocol"]["name"] == "digits-t2i-alignment"
    assert not any("captions" in d for d in pa["protocol_deviations"])
    assert on_the_fly["images"]["t_init"] == T_INIT

    # seeds 5-14: image i of the metrics is seed 5 + i, scored against caption 5 + i (digit (5 + i) % 10)
    later = sidbench.evaluate(generator=generator, metrics="prompt_alignment",
                              protocol="digits-t2i-alignment", seeds="5-14")
    images = torch.from_numpy(_pngs(out, range(5, 15)).astype(np.uint8))
    from sidbench.metrics.evaluate import evaluate as evaluate_images

    oracle = evaluate_images(images, metrics=["prompt_alignment"], protocols=["digits-t2i-alignment"],
                             captions=digit_captions(15)[5:])
    assert later["metrics"]["prompt_alignment"]["value"] == pytest.approx(
        oracle["metrics"]["prompt_alignment"]["value"], rel=1e-12)


@pytest.mark.parametrize("case", ["few-captions", "edm-with-captions", "coco-no-captions", "wrong-teacher",
                                  "sigma-init", "no-extra"])
def test_bad_text_to_image_input_is_one_line(case, generator, teacher, tmp_path, capsys, monkeypatch):
    from tests.t2i._tiny_sd import write_layout

    caps = tmp_path / "caps.txt"
    caps.write_text("a handwritten digit one\nthe number 2\n")
    out = tmp_path / "o"
    common = ["--out", out, "--seeds", "0-3"]
    argv, message = {
        "few-captions": (["generate", "--network", generator, "--captions", caps, *common],
                         "seed 3 has no caption: " + str(caps) + " holds 2"),
        "edm-with-captions": (["generate", "--network", "digits", "--captions", caps, *common],
                              "--captions condition text-to-image networks; digits is not one"),
        "coco-no-captions": (["generate", "--network", write_layout(tmp_path / "sd"),
                              "--suite", "coco2014-sd15", *common],
                             "--captions is needed: suite coco2014-sd15"),
        "wrong-teacher": (["generate", "--network",
                           _save_generator(teacher, tmp_path / "g", teacher_sha256="0" * 64), *common],
                          "is not the one"),
        "sigma-init": (["eval", "--generator", generator, "--suite", "digits-t2i", "--sigma-init", "2"],
                       "--sigma-init and --student-steps sample EDM generators"),
        "no-extra": (["generate", "--network", generator, *common], 'pip install -e ".[t2i]"'),
    }[case]
    if case == "no-extra":
        monkeypatch.setitem(sys.modules, "diffusers", None)  # `import diffusers` raises ImportError
    rc, _, err = run_cli(argv, capsys)
    assert rc == 1 and message in err, err
    _one_line(err)
    assert not out.exists()
