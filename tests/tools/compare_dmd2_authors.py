"""Run the DMD2 authors' loss code beside ours on a tiny EDM ADM network: same weights, inputs and draws.

Not collected by pytest (the authors' code is not part of this repository). Usage, with a checkout of
tianweiy/DMD2 in a scratch folder (`git archive HEAD main third_party/edm dnnlib | tar -x -C /tmp/dmd2`):

    python tests/tools/compare_dmd2_authors.py --authors /tmp/dmd2

It builds the authors' `EDMGuidance` with its own `__init__` (their teacher load, `map_augment`
deletion, fake-net deepcopy, 768-channel GAN head and flipped Karras grid), feeding it a tiny
DhariwalUNet (16x16, 768 channels at the 8x8 bottleneck, so their hard-coded head fits) instead of
the ImageNet pickle; perturbs the fake net so the distribution-matching gradient is not zero; copies
every network, and their head, into ours (strict); records the numbers their losses draw from the
global RNG (torch.randint / torch.randn_like) and feeds them to our pure losses. It prints the
largest relative difference (max |ours - theirs| / max |theirs|) of each loss value and of the
generator's (or, for the fake-net losses, the fake net's) gradients, and exits non-zero above --tol.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import types

import torch
from authors_compare import clear, randomise, rel
from sidbench_baselines import dmd, dmd2
from sidbench_baselines.karras import karras_grid

from sidbench.nets import build_network

B, RES, LABELS = 4, 16, 10
ADM = dict(img_resolution=RES, img_channels=3, label_dim=LABELS, model_type="DhariwalUNet", augment_dim=9,
           model_channels=32, channel_mult=[1, 24], channel_mult_emb=4, num_blocks=1, attn_resolutions=[8],
           dropout=0.0, label_dropout=0)


def import_authors(path: str):
    """The authors' EDMPrecond and EDMGuidance (their repo root and third_party/edm on sys.path)."""
    sys.path[:0] = [path, f"{path}/third_party/edm"]
    import main.edm.edm_guidance as guidance
    from third_party.edm.training.networks import EDMPrecond
    return guidance, EDMPrecond


def theirs_net(EDMPrecond, seed: int) -> torch.nn.Module:
    kw = {k: v for k, v in ADM.items() if k not in ("img_resolution", "img_channels", "label_dim")}
    return randomise(EDMPrecond(img_resolution=RES, img_channels=3, label_dim=LABELS, **kw), seed)


def ours_like(theirs: torch.nn.Module) -> torch.nn.Module:
    net = build_network({"class_name": "EDMPrecond", "init_kwargs": dict(ADM)})
    state = theirs.state_dict()
    missing = net.load_state_dict(state, strict=False)
    assert not missing.unexpected_keys and set(missing.missing_keys) <= {"model.map_augment.weight"}, missing
    if "model.map_augment.weight" in missing.missing_keys:  # theirs dropped it: ours keeps it, never used
        with torch.no_grad():
            net.model.map_augment.weight.fill_(float("nan"))  # any use would show as NaN
    return net


class Recorder:
    """Wraps torch.randint and torch.randn_like; keeps (name, tensor) of every draw."""

    def __init__(self):
        self.draws: list[tuple[str, torch.Tensor]] = []

    @contextlib.contextmanager
    def active(self):
        originals = torch.randint, torch.randn_like

        def wrap(name, fn):
            def inner(*args, **kwargs):
                out = fn(*args, **kwargs)
                self.draws.append((name, out.detach().clone()))
                return out
            return inner

        torch.randint, torch.randn_like = wrap("randint", originals[0]), wrap("randn_like", originals[1])
        try:
            yield self
        finally:
            torch.randint, torch.randn_like = originals

    def take(self, name: str) -> torch.Tensor:
        for i, (n, t) in enumerate(self.draws):
            if n == name:
                del self.draws[i]
                return t
        raise KeyError(name)


def grad_rel(ours: torch.nn.Module, theirs: torch.nn.Module, prefix: str = "") -> float:
    """Largest relative gradient difference over the parameters both have (ours may keep map_augment)."""
    theirs_g = dict(theirs.named_parameters())
    worst, seen = 0.0, 0
    for name, p in ours.named_parameters():
        q = theirs_g.get(prefix + name)
        if q is None:
            assert p.grad is None or float(p.grad.abs().max()) == 0, name
            continue
        a = p.grad if p.grad is not None else torch.zeros_like(p)
        b = q.grad if q.grad is not None else torch.zeros_like(q)
        if float(b.abs().max()) > 0 or float(a.abs().max()) > 0:
            worst = max(worst, rel(a.flatten(), b.flatten()))
            seen += 1
    assert seen > 0, "no gradient compared"
    return worst


SIZES: dict[str, float] = {}  # the authors' values, printed so a comparison of zeros would show


def grad_norm(net: torch.nn.Module) -> float:
    total = sum(float(p.grad.double().pow(2).sum()) for p in net.parameters() if p.grad is not None)
    return float(total**0.5)


def build(guidance_mod, EDMPrecond):
    """The authors' EDMGuidance from their own __init__, on a tiny teacher; our matching networks."""
    teacher_t = theirs_net(EDMPrecond, 0)
    args = types.SimpleNamespace(
        model_id="tiny", sigma_data=0.5, sigma_max=80.0, sigma_min=0.002, rho=7.0, gan_classifier=True,
        diffusion_gan=True, diffusion_gan_max_timestep=1000, num_train_timesteps=1000,
        min_step_percent=0.02, max_step_percent=0.98, dataset_name="imagenet", resolution=RES,
        label_dim=LABELS, use_fp16=False)
    originals = guidance_mod.get_edm_network, guidance_mod.dnnlib.util.open_url, guidance_mod.pickle.load
    guidance_mod.get_edm_network = lambda a: theirs_net(EDMPrecond, 99)
    guidance_mod.dnnlib.util.open_url = lambda url: contextlib.nullcontext(None)
    guidance_mod.pickle.load = lambda f: {"ema": teacher_t}
    try:
        torch.manual_seed(5)
        g = guidance_mod.EDMGuidance(args, accelerator=None)
    finally:
        guidance_mod.get_edm_network, guidance_mod.dnnlib.util.open_url, guidance_mod.pickle.load = originals
    randomise(g.fake_unet, 1, scale=0.45)  # the fake net tracks the generator: not the teacher
    with torch.no_grad():  # wake the head's last conv
        for p in g.cls_pred_branch.parameters():
            p.mul_(3.0)
    teacher_o = ours_like(g.real_unet).requires_grad_(False).eval()
    fake_o = ours_like(g.fake_unet)
    head_o = dmd2.gan_head(768, 8)
    head_o.load_state_dict(g.cls_pred_branch.state_dict(), strict=True)  # same architecture, strictly
    headed_o = dmd2.GANHeaded(fake_o, head_o)
    gen_t = theirs_net(EDMPrecond, 2)
    gen_o = ours_like(gen_t)
    for net in (g, gen_t, headed_o, gen_o):
        net.train()
    teacher_o.eval()
    return g, gen_t, teacher_o, headed_o, gen_o


def compare(authors: str) -> dict[str, float]:
    guidance_mod, EDMPrecond = import_authors(authors)
    g, gen_t, teacher_o, fake_o, gen_o = build(guidance_mod, EDMPrecond)
    out: dict[str, float] = {}
    grid = karras_grid()
    out["karras grid (bits)"] = float((grid - g.karras_sigmas).abs().max())
    out["min/max step"] = float(abs(g.min_step - dmd.GridSettings().min_step)
                                + abs(g.max_step - dmd.GridSettings().max_step))
    gen = torch.Generator().manual_seed(7)
    z = torch.randn(B, 3, RES, RES, generator=gen)
    labels = torch.nn.functional.one_hot(torch.randint(LABELS, (B,), generator=gen), LABELS).float()
    real = torch.randn(B, 3, RES, RES, generator=gen).tanh()
    real_labels = torch.nn.functional.one_hot(torch.randint(LABELS, (B,), generator=gen), LABELS).float()

    # --- generator turn: distribution matching + GAN (their guidance frozen, as their generator turn) ---
    g.requires_grad_(False)
    fake_o.requires_grad_(False)
    clear(gen_t, gen_o)
    x_t = gen_t(80.0 * z, torch.full((B,), 80.0), labels)
    x_o = dmd.generate_images(gen_o, z, labels, 80.0)
    out["G(z) images"] = rel(x_o.detach(), x_t.detach())
    rec = Recorder()
    with rec.active():
        loss_dm_t = g.compute_distribution_matching_loss(x_t, labels)[0]["loss_dm"]
    idx, noise = rec.take("randint"), rec.take("randn_like")
    sigma = grid[idx]
    loss_dm_o = dmd.generator_loss(teacher_o, fake_o, x_o, sigma, noise, labels)
    per = dmd.generator_loss(teacher_o, fake_o, x_o, sigma, noise, labels, reduction="none")
    out["dm loss"] = rel(loss_dm_o.detach(), loss_dm_t.detach())
    SIZES["dm loss"] = float(loss_dm_t)
    out["dm loss, per-sample sum / B"] = rel((per.sum() / B).detach(), loss_dm_t.detach())
    loss_dm_t.backward(retain_graph=True)
    loss_dm_o.backward(retain_graph=True)
    out["dm generator grads"] = grad_rel(gen_o, gen_t)
    SIZES["dm generator grad norm"] = grad_norm(gen_t)

    clear(gen_t, gen_o)
    rec = Recorder()
    with rec.active():
        gan_t = g.compute_generator_clean_cls_loss(x_t, labels)["gen_cls_loss"]
    idx, noise = rec.take("randint"), rec.take("randn_like")
    gan_o = dmd2.gan_generator_loss(fake_o, x_o, grid[idx].reshape(-1, 1, 1, 1), noise, labels)
    out["gan generator loss"] = rel(gan_o.detach(), gan_t.detach())
    gan_t.backward(retain_graph=True)
    gan_o.backward(retain_graph=True)
    out["gan generator grads"] = grad_rel(gen_o, gen_t)
    SIZES["gan generator loss"], SIZES["gan generator grad norm"] = float(gan_t), grad_norm(gen_t)

    clear(gen_t, gen_o)
    (loss_dm_t + 3e-3 * gan_t).backward()
    (loss_dm_o + 3e-3 * gan_o).backward()
    out["dm + 3e-3 gan generator grads"] = grad_rel(gen_o, gen_t)
    g.requires_grad_(True)
    g.real_unet.requires_grad_(False)
    fake_o.requires_grad_(True)

    # --- guidance turn: fake-net denoising loss and the discriminator loss ---
    images = x_t.detach()
    clear(g, fake_o)
    rec = Recorder()
    with rec.active():
        fake_t = g.compute_loss_fake(images, labels)[0]["loss_fake_mean"]
    noise, idx = rec.take("randn_like"), rec.take("randint")
    fake_loss_o = dmd.fake_score_loss(fake_o, images, grid[idx], noise, labels)
    out["fake loss"] = rel(fake_loss_o.detach(), fake_t.detach())
    fake_t.backward()
    fake_loss_o.backward()
    out["fake loss: fake-net grads"] = grad_rel(fake_o.net, g.fake_unet)
    SIZES["fake loss"], SIZES["fake loss grad norm"] = float(fake_t), grad_norm(g.fake_unet)

    clear(g, fake_o)
    rec = Recorder()
    with rec.active():
        disc_t = g.compute_guidance_clean_cls_loss(real, images, real_labels, labels)[0]["guidance_cls_loss"]
    idx_r, noise_r = rec.take("randint"), rec.take("randn_like")
    idx_f, noise_f = rec.take("randint"), rec.take("randn_like")
    disc_o = dmd2.gan_discriminator_loss(fake_o, images, real, grid[idx_f].reshape(-1, 1, 1, 1), noise_f,
                                         grid[idx_r].reshape(-1, 1, 1, 1), noise_r, labels, real_labels)
    out["discriminator loss"] = rel(disc_o.detach(), disc_t.detach())
    disc_t.backward()
    disc_o.backward()
    out["discriminator: fake-net grads"] = grad_rel(fake_o.net, g.fake_unet)
    out["discriminator: head grads"] = grad_rel(fake_o.head, g.cls_pred_branch)
    SIZES["discriminator loss"] = float(disc_t)
    SIZES["discriminator head grad norm"] = grad_norm(g.cls_pred_branch)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", required=True, help="a checkout of tianweiy/DMD2")
    parser.add_argument("--tol", type=float, default=1e-4)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = compare(args.authors)
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value:.3e}")
    for key, value in SIZES.items():
        print(f"(theirs) {key}: {value:.4g}")
    worst = max(results.values())
    print(f"largest relative difference: {worst:.3e} (tol {args.tol:g})")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
