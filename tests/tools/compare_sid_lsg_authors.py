"""Run the SiD-LSG authors' sampler/denoiser beside ours on a tiny random Stable-Diffusion-like UNet.

Not collected by pytest (the authors' code is not part of this repository). Usage, with a checkout of
mingyuanzhou/SiD-LSG (branch main) in a scratch folder:

    python tests/tools/compare_sid_lsg_authors.py --lsg /tmp/lsg

It builds a tiny diffusers UNet2DConditionModel (sample 8, 4 channels, cross-attention 32), a tiny
CLIPTextModel + CLIPTokenizer and a DDPMScheduler with SD 1.5's schedule. Three UNet copies
(generator; fake and teacher perturbed differently, so the losses are not zero) are given to the
authors' `sid_sd_sampler` / `sid_sd_denoise` and, with the same weights, prompts, z, noise and t, to
ours (`sidbench.methods.sid_lsg` on `EpsDenoiser.wrap`, prompts through `PromptEncoder`). The loss
lines of the authors' loop (`training/sid_training_loop.py`, fake step and generator step) are not
functions, so they are restated here next to the calls. For each guidance setting (kappa1, kappa2,
kappa4) it prints the largest relative difference max |ours - theirs| / max |theirs| of G(z), the
per-sample fake and generator losses (alpha 1: the authors' `alpha == 1` branch; alpha 1.2: the
general one) and their gradients w.r.t. the fake net's and the generator's parameters (worst parameter
tensor, `grad_rel`).

It runs twice. In float32 (the dtype both codes train in) G(z), the losses and the fake net's
gradients agree bit for bit (the alpha == 1 loss to ~1e-8: the authors write it in another form), but
the generator's gradient sums three paths into G(z) (direct, through the fake net, through the teacher)
in another order, so parameter tensors whose gradient nearly cancels differ by a few 1e-5 relative
(calling the authors' teacher before their fake net moves their own gradients as much); those rows are
checked against --tol32. In float64 (both codes' `torch.float32` casts read as float64, the nets in
double; abar keeps its float32 values on both sides) that rounding is gone and every row is checked
against --tol: a wrong formula, kappa or operand order shows far above it (swapping kappa2 and kappa4,
or alpha 1 for 1.2, gives 0.26 to 2.7). Exit status 1 when a row exceeds its tolerance.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import json
import re
import sys
import tempfile
import types
from pathlib import Path

import torch
from authors_compare import clear, grad_rel, import_fresh, randomise, rel

from sidbench.methods import sid, sid_lsg
from sidbench.nets import ddpm, eps_unet, prompts
from sidbench.nets.eps_unet import EpsDenoiser
from sidbench.nets.prompts import PromptEncoder, clip_tokenize

T_INIT = 625
B = 4
PROMPTS = ["a cat", "cat on a mat", "", "a big fat cat sat"]  # "" (a dropped prompt); the last is truncated
T = [20, 333, 625, 979]  # both ends of U{20..979} and the generator's own step
# (kappa1 = cfg_train_fake, kappa2 = cfg_eval_fake, kappa4 = cfg_eval_real): the published runs set all
# three to one kappa; the mixed rows tell the three places apart.
KAPPAS = [(1.0, 1.0, 1.0), (1.5, 1.5, 1.5), (4.5, 4.5, 4.5), (4.5, 1.5, 1.0), (1.0, 4.5, 1.5)]
UNET = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
            norm_num_groups=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=2)
SD15_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                      beta_schedule="scaled_linear", clip_sample=False)  # SD 1.5's scheduler_config.json
# (clip_sample false there; DDPMScheduler's default True would clip the authors' x0 to [-1, 1], ours never)


def import_authors(path: str):
    """The authors' `training.sid_sd_util`; a name this diffusers no longer exports is stubbed on its
    module in sys.modules (the sampler and denoiser never use those names)."""
    for _ in range(20):
        try:
            return import_fresh(path, ["training.sid_sd_util"])["training.sid_sd_util"]
        except ImportError as exc:
            found = re.match(r"cannot import name '(\w+)' from '([\w.]+)'", str(exc))
            if not found:
                raise
            name, module = found.groups()
            setattr(importlib.import_module(module), name, type(name, (), {}))
            print(f"(stubbed {module}.{name}, missing in this diffusers)")
    raise RuntimeError("too many missing names in the authors' imports")


def tiny_text(folder: Path):
    """A CLIPTokenizer (letters + a few merges, 8 tokens) and a random CLIPTextModel (hidden 32)."""
    import transformers

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = letters + [c + "</w>" for c in letters] + ["ca", "cat</w>", "at</w>"]
    vocab = {tok: i for i, tok in enumerate([*tokens, "<|startoftext|>", "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\nc a\nca t</w>\na t</w>\n")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"model_max_length": 8, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
         "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(folder))
    eos = vocab["<|endoftext|>"]
    config = transformers.CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=8, bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=eos, pad_token_id=eos)
    torch.manual_seed(3)
    encoder = transformers.CLIPTextModel(config).eval().requires_grad_(False)
    return tokenizer, encoder


def perturbed(unet: torch.nn.Module, seed: int, size: float = 0.2) -> torch.nn.Module:
    """A copy with every parameter moved by size * N(0, 1) * (its own RMS)."""
    out = copy.deepcopy(unet)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(torch.randn(p.shape, generator=g) * size * p.square().mean().sqrt())
    return out


@contextlib.contextmanager
def float32_reads_float64(*modules: types.ModuleType):
    """While active, `torch.float32` inside `modules` is torch.float64 (their explicit casts keep double)."""
    proxy = types.ModuleType("torch")
    proxy.__dict__.update(vars(torch))
    proxy.float32 = torch.float64
    saved = [m.torch for m in modules]
    for m in modules:
        m.torch = proxy
    try:
        yield
    finally:
        for m, original in zip(modules, saved, strict=True):
            m.torch = original


def authors_sampler(lsg, unet, z, scheduler, text_encoder, tokenizer):
    init = T_INIT * torch.ones((B,), dtype=torch.long)  # the loop's init_timesteps
    return lsg.sid_sd_sampler(unet=unet, latents=z, contexts=PROMPTS, init_timesteps=init,
                              noise_scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer,
                              resolution=8, dtype=z.dtype, return_images=False, num_steps=1)


def authors_denoise(lsg, unet, images, noise, t, scheduler, text_encoder, tokenizer, kappa, predict_x0):
    return lsg.sid_sd_denoise(unet=unet, images=images, noise=noise, contexts=PROMPTS, timesteps=t,
                              noise_scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer,
                              resolution=8, dtype=images.dtype, predict_x0=predict_x0, guidance_scale=kappa)


def compare(lsg, results: dict, dtype: torch.dtype) -> None:
    import diffusers

    diffusers.utils.logging.set_verbosity_error()  # not the "cast with to()" advice for the float64 nets
    scheduler = diffusers.DDPMScheduler(**SD15_SCHEDULER)
    schedule = {k: SD15_SCHEDULER[k] for k in ddpm.SD15_SCHEDULE}
    results["abar (scheduler vs ddpm.alphas_cumprod)"] = rel(ddpm.alphas_cumprod(schedule),
                                                             scheduler.alphas_cumprod)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer, text_encoder = tiny_text(Path(tmp))
    text_encoder.to(dtype)
    encoder = PromptEncoder(text_encoder, clip_tokenize(tokenizer))
    text = encoder.encode(PROMPTS)
    torch.manual_seed(0)
    base = randomise(diffusers.UNet2DConditionModel(**UNET), seed=0).to(dtype)
    theirs = {"generator": base, "fake": perturbed(base, 1), "teacher": perturbed(base, 2)}
    ours = {name: EpsDenoiser.wrap(copy.deepcopy(net), schedule) for name, net in theirs.items()}
    for nets in (theirs, ours):
        nets["teacher"].eval().requires_grad_(False)
    g = torch.Generator().manual_seed(10)
    z = torch.randn(B, 4, 8, 8, generator=g).to(dtype)
    noise = torch.randn(B, 4, 8, 8, generator=g).to(dtype)
    t = torch.tensor(T, dtype=torch.long)

    for k1, k2, k4 in KAPPAS:
        key = f"{str(dtype).removeprefix('torch.')} kappa1={k1} kappa2={k2} kappa4={k4}"
        # Fake-net step: G(z) without a graph (generator in eval), the fake net trained on its guided eps.
        for nets in (theirs, ours):
            nets["generator"].eval().requires_grad_(False)
            nets["fake"].train().requires_grad_(True)
        clear(theirs["fake"], ours["fake"])
        with torch.no_grad():
            x_t = authors_sampler(lsg, theirs["generator"], z, scheduler, text_encoder, tokenizer)
            x_o = sid_lsg.generate_latents(ours["generator"], z, text, T_INIT)
        noise_fake = authors_denoise(lsg, theirs["fake"], x_t, noise, t, scheduler, text_encoder, tokenizer,
                                     k1, predict_x0=False)
        fake_t = ((noise_fake - noise) ** 2).flatten(1).sum(1)  # loop: loss = (noise_fake - noise)**2
        uncond = encoder.empty(B) if k1 != 1 else None
        fake_o = sid_lsg.fake_score_loss(ours["fake"], x_o, t, noise, text, uncond, k1)
        fake_t.sum().mul(1 / B).backward()  # loss.sum().mul(loss_scaling / batch_gpu_total)
        fake_o.sum().mul(1 / B).backward()
        results[f"{key} G(z) (eval)"] = rel(x_o, x_t)
        results[f"{key} fake loss"] = rel(fake_o.detach(), fake_t.detach())
        results[f"{key} fake grads"] = grad_rel(ours["fake"].model, theirs["fake"])

        # Generator step: G(z) with a graph (generator in train), fake net and teacher frozen in eval.
        for nets in (theirs, ours):
            nets["fake"].eval().requires_grad_(False)
            nets["generator"].train().requires_grad_(True)
        uncond = encoder.empty(B) if (k2 != 1 or k4 != 1) else None
        for alpha in (1.0, 1.2):
            clear(theirs["generator"], ours["generator"])
            images = authors_sampler(lsg, theirs["generator"], z, scheduler, text_encoder, tokenizer)
            y_fake = authors_denoise(lsg, theirs["fake"], images, noise, t, scheduler, text_encoder,
                                     tokenizer, k2, predict_x0=True)
            y_real = authors_denoise(lsg, theirs["teacher"], images, noise, t, scheduler, text_encoder,
                                     tokenizer, k4, predict_x0=True)
            with torch.no_grad():
                w = (images - y_real).abs().mean(dim=[1, 2, 3], keepdim=True).clip(min=1e-5)
            if alpha == 1:  # the loop's two branches
                gen_t = (y_real - y_fake) * (y_fake - images) / w
            else:
                gen_t = (y_real - y_fake) * ((y_real - images) - alpha * (y_real - y_fake)) / w
            gen_t = gen_t.flatten(1).sum(1)
            x_g = sid_lsg.generate_latents(ours["generator"], z, text, T_INIT)
            gen_o = sid_lsg.generator_loss(ours["teacher"], ours["fake"], x_g, t, noise, text, uncond,
                                           kappa_real=k4, kappa_fake=k2, alpha=alpha)
            gen_t.sum().mul(1 / B).backward()  # loss.sum().mul(loss_scaling_G / batch_gpu_total)
            gen_o.sum().mul(1 / B).backward()
            results[f"{key} alpha={alpha} G(z) (train)"] = rel(x_g.detach(), images.detach())
            results[f"{key} alpha={alpha} generator loss"] = rel(gen_o.detach(), gen_t.detach())
            results[f"{key} alpha={alpha} generator grads"] = grad_rel(ours["generator"].model,
                                                                      theirs["generator"])
            if k1 == k2 == k4 == 1.0 and alpha == 1.0 and dtype == torch.float32:  # not trivially zero
                print(f"(scale: |fake loss| {fake_t.abs().max():.3g}, |generator loss| "
                      f"{gen_t.abs().max():.3g}, |G(z)| {images.abs().max():.3g})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lsg", required=True, help="checkout of mingyuanzhou/SiD-LSG branch main")
    parser.add_argument("--tol", type=float, default=1e-5, help="float64 rows and float32 values")
    parser.add_argument("--tol32", type=float, default=1e-4, help="float32 gradient rows (see above)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lsg = import_authors(args.lsg)
    results: dict[str, float] = {}
    compare(lsg, results, torch.float32)
    with float32_reads_float64(lsg, eps_unet, prompts, sid):
        compare(lsg, results, torch.float64)
    width = max(map(len, results))
    failed = []
    for key, value in results.items():
        tol = args.tol32 if key.startswith("float32") and key.endswith("grads") else args.tol
        failed += [key] if not value <= tol else []
        print(f"{key:<{width}}  {value:.3e}{'  > tol' if key in failed else ''}")
    for prefix in ("float32", "float64"):
        rows = {k: v for k, v in results.items() if k.startswith(prefix)}
        worst = max(rows, key=rows.get)
        print(f"largest relative difference, {prefix}: {rows[worst]:.3e} ({worst})")
    print(f"FAILED: {len(failed)} rows above tolerance (marked)" if failed else "all rows within tolerance")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
