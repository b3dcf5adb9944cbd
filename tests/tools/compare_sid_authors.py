"""Run the SiD authors' loss code beside ours on tiny EDM networks: same weights, inputs and draws.

Not collected by pytest (the authors' code is not part of this repository). Usage, with checkouts of
mingyuanzhou/SiD's two branches in scratch folders (e.g. `git archive main | tar -x -C /tmp/sid-main`):

    python tests/tools/compare_sid_authors.py --main /tmp/sid-main --sida /tmp/sid-sida

For each branch it builds tiny DDPM++ networks with the authors' classes, copies their state dicts
into ours (same parameter names, strict), records the random numbers the authors' losses draw from
the global RNG (torch.rand / randn / randn_like), feeds the same numbers to our pure losses, and
prints the largest relative difference (max |ours - theirs| / max |theirs|) of every loss value
and every gradient; it exits non-zero when one exceeds --tol.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import torch
from authors_compare import clear, grad_rel, import_fresh, randomise, rel

from sidbench.methods import sid, sida
from sidbench.nets import build_network

KWARGS = dict(img_resolution=8, img_channels=3, model_channels=16, channel_mult=[1, 2], num_blocks=1,
              attn_resolutions=[4], augment_dim=9, dropout=0.0)
B = 6


def import_branch(path: str):
    """A branch's `training`, `torch_utils`, `dnnlib` (and `sida_training`) imported afresh from `path`."""
    found = import_fresh(path, ["training.networks", "training.sid_loss"],
                         roots=("training", "torch_utils", "dnnlib", "sida_training"),
                         optional=["sida_training.sida_loss", "sida_training.sida_networks"])
    return {name.rsplit(".", 1)[1]: mod for name, mod in found.items()}


def pair(cls, label_dim: int, seed: int, **extra):
    """(theirs, ours) with identical weights."""
    theirs = randomise(cls(label_dim=label_dim, **KWARGS, **extra), seed)
    ours = build_network({"class_name": "EDMPrecond", "init_kwargs": dict(KWARGS, label_dim=label_dim,
                                                                          model_type="SongUNet")})
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs, ours


class Recorder:
    """Wraps torch.rand / randn / randn_like and keeps every tensor the authors' code draws."""

    def __init__(self):
        self.draws: list[torch.Tensor] = []

    @contextlib.contextmanager
    def active(self):
        originals = torch.rand, torch.randn, torch.randn_like

        def wrap(fn):
            def inner(*args, **kwargs):
                out = fn(*args, **kwargs)
                self.draws.append(out.detach().clone())
                return out
            return inner

        torch.rand, torch.randn, torch.randn_like = (wrap(f) for f in originals)
        try:
            yield self
        finally:
            torch.rand, torch.randn, torch.randn_like = originals


def case_inputs(label_dim: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, 3, 8, 8, generator=g)
    labels = None
    if label_dim:
        labels = torch.nn.functional.one_hot(torch.randint(label_dim, (B,), generator=g), label_dim).float()
    real = torch.randn(B, 3, 8, 8, generator=g).tanh()
    return z, labels, real


def compare_main(mods, results: dict, nan_row: int | None = None) -> None:
    networks, loss_mod = mods["networks"], mods["sid_loss"]
    tag = "main" + ("" if nan_row is None else "+nan")
    for label_dim in (0, 10):
        teacher_t, teacher_o = pair(networks.EDMPrecond, label_dim, 0, model_type="SongUNet")
        fake_t, fake_o = pair(networks.EDMPrecond, label_dim, 1, model_type="SongUNet")
        gen_t, gen_o = pair(networks.EDMPrecond, label_dim, 2, model_type="SongUNet")
        for net in (teacher_t, teacher_o):
            net.eval().requires_grad_(False)
        z, labels, _ = case_inputs(label_dim, 10 + label_dim)
        loss_fn = loss_mod.SID_EDMLoss()
        for alpha in (0.0, 1.0, 1.2):
            # Generator: the authors' G call and generator_loss (fake net frozen, eval).
            fake_t.eval().requires_grad_(False)
            fake_o.eval().requires_grad_(False)
            gen_t.train()
            gen_o.train()
            clear(gen_t, gen_o)
            x_t = gen_t(2.5 * z, 2.5 * torch.ones(B, 1, 1, 1), labels, augment_labels=torch.zeros(B, 9))
            x_o = sid.generate_images(gen_o, z, labels, 2.5)
            if nan_row is not None:
                x_t = x_t.clone()
                x_t[nan_row, 0, 0, 0] = float("nan")
                x_o = x_o.clone()
                x_o[nan_row, 0, 0, 0] = float("nan")
            rec = Recorder()
            with rec.active():
                theirs = loss_fn.generator_loss(true_score=teacher_t, fake_score=fake_t, images=x_t,
                                                labels=labels, augment_pipe=None, alpha=alpha, tmax=800)
            u, noise = rec.draws
            sigma = sid.generator_sigma(u, 800)
            ours = sid.generator_loss(teacher_o, fake_o, x_o, sigma, noise, labels, alpha=alpha)
            keep = [i for i in range(B) if i != nan_row]
            (theirs.sum() * 100 / B).backward()
            (ours.sum() * 100 / B).backward()
            key = f"{tag} L={label_dim} alpha={alpha}"
            results[f"{key} G images"] = rel(x_o[keep].detach(), x_t[keep].detach())
            results[f"{key} generator loss"] = rel(ours[keep].detach(), theirs.flatten(1).sum(1).detach())
            if nan_row is not None:
                results[f"{key} generator loss (NaN row is 0)"] = float(ours[nan_row].detach().abs())
            else:
                results[f"{key} generator grads"] = grad_rel(gen_o, gen_t)
        # Fake net: the authors' __call__ (no augmentation), then with a fixed augmentation.
        fake_t.train().requires_grad_(True)
        fake_o.train().requires_grad_(True)
        with torch.no_grad():
            images = gen_t.eval()(2.5 * z, 2.5 * torch.ones(B, 1, 1, 1), labels,
                                  augment_labels=torch.zeros(B, 9))
        if nan_row is not None:
            images = images.clone()
            images[nan_row, 1, 2, 3] = float("nan")
        aug_images = images.flip(3)
        aug_labels = torch.randn(B, 9, generator=torch.Generator().manual_seed(3))
        for augmented in (False, True):
            pipe = (lambda x, out=(aug_images, aug_labels): out) if augmented else None
            clear(fake_t, fake_o)
            rec = Recorder()
            with rec.active():
                theirs = loss_fn(fake_score=fake_t, images=images, labels=labels, augment_pipe=pipe)
            normal, noise = rec.draws
            sigma = (normal * 1.2 - 1.2).exp()
            x = aug_images if augmented else images
            ours = sid.fake_score_loss(fake_o, x, sigma, noise, labels, aug_labels if augmented else None)
            theirs.sum().div(B).backward()
            ours.sum().div(B).backward()
            keep = [i for i in range(B) if i != nan_row]
            key = f"{tag} L={label_dim} aug={augmented}"
            results[f"{key} fake loss"] = rel(ours[keep].detach(), theirs.flatten(1).sum(1).detach())
            if nan_row is None:
                results[f"{key} fake grads"] = grad_rel(fake_o, fake_t)


def compare_sida(mods, results: dict) -> None:
    nets, loss_mod = mods["sida_networks"], mods["sida_loss"]
    for label_dim in (0, 10):
        teacher_t, teacher_o = pair(nets.EDMPrecond_EncoderDecoder, label_dim, 0)
        fake_t, fake_o = pair(nets.EDMPrecond_EncoderDecoder, label_dim, 1)
        gen_t, gen_o = pair(nets.EDMPrecond_EncoderDecoder, label_dim, 2)
        for net in (teacher_t, teacher_o):
            net.eval().requires_grad_(False)
        z, labels, real = case_inputs(label_dim, 20 + label_dim)
        loss_fn = loss_mod.SIDA_EDMLoss()
        for alpha in (0.0, 1.0, 1.2):
            fake_t.eval().requires_grad_(False)
            fake_o.eval().requires_grad_(False)
            gen_t.train()
            gen_o.train()
            clear(gen_t, gen_o)
            x_t = gen_t(2.5 * z, 2.5 * torch.ones(B, 1, 1, 1), labels, augment_labels=torch.zeros(B, 9))
            x_o = sid.generate_images(gen_o, z, labels, 2.5)
            rec = Recorder()
            with rec.active():
                loss_t, gan_t = loss_fn.generator_share_encoder_loss(
                    true_score=teacher_t, fake_score=fake_t, images=x_t, labels=labels, augment_pipe=None,
                    alpha=alpha, tmax=800)
            u, noise = rec.draws
            sigma = sid.generator_sigma(u, 800)
            sid_o, gan_o = sida.generator_losses(teacher_o, fake_o, x_o, sigma, noise, labels, alpha=alpha)
            chw = 3 * 8 * 8
            gan_t = gan_t.mean(dim=[1, 2, 3]) * chw  # the authors' loop, before the sum and scalings
            (0.5 * loss_t.sum() * 100 / B + 0.5 * gan_t.sum() * 0.01 / B).backward()
            (0.5 * sid_o.sum() * 100 / B + 0.5 * (gan_o * chw).sum() * 0.01 / B).backward()
            key = f"sida L={label_dim} alpha={alpha}"
            results[f"{key} sid term"] = rel(sid_o.detach(), loss_t.flatten(1).sum(1).detach())
            results[f"{key} gan term"] = rel(gan_o.detach() * chw, gan_t.detach())
            results[f"{key} generator grads (0.5/0.5)"] = grad_rel(gen_o, gen_t)
        fake_t.train().requires_grad_(True)
        fake_o.train().requires_grad_(True)
        with torch.no_grad():
            images = gen_t.eval()(2.5 * z, 2.5 * torch.ones(B, 1, 1, 1), labels,
                                  augment_labels=torch.zeros(B, 9))
        clear(fake_t, fake_o)
        rec = Recorder()
        with rec.active():
            den_t, disc_t = loss_fn.fakescore_discriminator_share_encoder_loss(
                fake_score=fake_t, images=images, labels=labels, augment_pipe=None, real_images=real)
        normal, noise = rec.draws
        sigma = (normal * 1.2 - 1.2).exp()
        den_o, disc_o = sida.fake_score_losses(fake_o, images, real, sigma, noise, labels)
        (den_t.sum() / B + disc_t.sum() / B).backward()
        (den_o.sum() / B + disc_o.sum() / B).backward()
        key = f"sida L={label_dim}"
        results[f"{key} fake denoise term"] = rel(den_o.detach(), den_t.flatten(1).sum(1).detach())
        results[f"{key} discriminator term"] = rel(disc_o.detach(), disc_t.flatten().detach())
        results[f"{key} fake grads (denoise + D)"] = grad_rel(fake_o, fake_t)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--main", required=True, help="checkout of mingyuanzhou/SiD branch main")
    parser.add_argument("--sida", required=True, help="checkout of mingyuanzhou/SiD branch sida")
    parser.add_argument("--tol", type=float, default=1e-4)
    args = parser.parse_args()
    torch.manual_seed(0)
    results: dict[str, float] = {}
    main_mods = import_branch(args.main)
    compare_main(main_mods, results)
    compare_main(main_mods, results, nan_row=2)
    compare_sida(import_branch(args.sida), results)
    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:<{width}}  {value:.3e}")
    worst = max(results, key=results.get)
    print(f"largest relative difference: {results[worst]:.3e} ({worst})")
    return 0 if results[worst] <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
