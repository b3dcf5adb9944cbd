"""Run the Diff-Instruct authors' loss code beside ours on tiny EDM networks: same weights, inputs, draws.

Not collected by pytest (the authors' code is not part of this repository). Usage, with a checkout of
pkulwj1994/diff_instruct in a scratch folder (e.g. `git archive HEAD | tar -x -C /tmp/di`):

    python tests/tools/compare_diff_instruct_authors.py --repo /tmp/di

It builds tiny DDPM++ networks with the authors' classes (`training/networks.py`), copies their state
dicts into ours (same names, strict), records the numbers the authors' `DI_EDMLoss` draws from the
global RNG (torch.randn / randn_like), feeds the same numbers to our pure losses and prints the largest
relative difference (max |ours - theirs| / max |theirs|) of every loss value and every gradient; it
exits non-zero when one exceeds --tol.

Dropout: the authors' `gloss` puts both networks in train mode and restores the *CUDA* RNG state
between the teacher's and the fake net's passes. On the CPU their `torch.cuda.get_rng_state` /
`set_rng_state` are pointed at the CPU generator here, so with dropout 0.13 their masks are shared the
way they are on a GPU; both sides start each case from the same global seed, so the masks must match.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import torch
from authors_compare import clear, grad_rel, import_fresh, randomise, rel
from sidbench_baselines import diff_instruct as di

from sidbench.nets import build_network

B = 6


def kwargs(dropout: float) -> dict:
    return dict(img_resolution=8, img_channels=3, model_channels=16, channel_mult=[1, 2], num_blocks=1,
                attn_resolutions=[4], augment_dim=9, dropout=dropout)


def import_repo(path: str):
    found = import_fresh(path, ["training.networks", "training.di_loss"])
    return found["training.networks"], found["training.di_loss"]


def pair(networks, label_dim: int, seed: int, dropout: float):
    theirs = networks.EDMPrecond(label_dim=label_dim, model_type="SongUNet", **kwargs(dropout))
    theirs = randomise(theirs, seed)
    ours = build_network({"class_name": "EDMPrecond",
                          "init_kwargs": dict(kwargs(dropout), label_dim=label_dim, model_type="SongUNet")})
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs, ours


class Recorder:
    """Wraps torch.randn / randn_like and keeps every tensor the authors' code draws."""

    def __init__(self):
        self.draws: list[torch.Tensor] = []

    @contextlib.contextmanager
    def active(self):
        originals = torch.randn, torch.randn_like

        def wrap(fn):
            def inner(*args, **kw):
                out = fn(*args, **kw)
                self.draws.append(out.detach().clone())
                return out
            return inner

        torch.randn, torch.randn_like = (wrap(f) for f in originals)
        try:
            yield self
        finally:
            torch.randn, torch.randn_like = originals


@contextlib.contextmanager
def cuda_rng_on_cpu():
    """The authors' gloss saves/restores the CUDA RNG; on the CPU that is the CPU generator."""
    get, set_ = torch.cuda.get_rng_state, torch.cuda.set_rng_state
    torch.cuda.get_rng_state = lambda *a, **k: torch.get_rng_state()
    torch.cuda.set_rng_state = lambda state, *a, **k: torch.set_rng_state(state)
    try:
        yield
    finally:
        torch.cuda.get_rng_state, torch.cuda.set_rng_state = get, set_


def compare(networks, loss_mod, results: dict, controls: dict) -> None:
    init_sigma = 1.0
    for label_dim in (0, 10):
        for dropout in (0.0, 0.13):
            teacher_t, teacher_o = pair(networks, label_dim, 0, dropout)
            fake_t, fake_o = pair(networks, label_dim, 1, dropout)
            gen_t, gen_o = pair(networks, label_dim, 2, dropout)
            for net in (teacher_t, teacher_o):
                net.requires_grad_(False)
            g = torch.Generator().manual_seed(10 + label_dim)
            z = torch.randn(B, 3, 8, 8, generator=g)
            labels = None
            if label_dim:
                labels = torch.nn.functional.one_hot(torch.randint(label_dim, (B,), generator=g),
                                                     label_dim).float()
            loss_fn = loss_mod.DI_EDMLoss()
            key = f"L={label_dim} dropout={dropout}"

            # Generator: the authors' loop (G in train mode) and gloss (both nets switched to train mode).
            fake_t.requires_grad_(False)
            fake_o.requires_grad_(False)
            gen_t.train()
            gen_o.train()
            clear(gen_t, gen_o)
            torch.manual_seed(1234)
            x_t = gen_t(init_sigma * z, init_sigma * torch.ones(B, 1, 1, 1), labels,
                        augment_labels=torch.zeros(B, 9))
            rec = Recorder()
            with rec.active(), cuda_rng_on_cpu():
                theirs = loss_fn.gloss(Sd=teacher_t, Sg=fake_t, images=x_t, labels=labels, augment_pipe=None)
            theirs = theirs.sum([1, 2, 3])
            normal, noise = rec.draws
            torch.manual_seed(1234)  # the same global RNG position for G's and the two nets' dropout
            x_o = di.generate_images(gen_o, z, labels, init_sigma)
            again = torch.randn([B, 1, 1, 1]), torch.randn_like(x_o)  # advance as gloss's two draws did
            assert torch.equal(again[0], normal) and torch.equal(again[1], noise)
            sigma = (normal * 1.2 - 1.2).exp()
            teacher_o.train()
            fake_o.train()
            state = torch.get_rng_state()
            ours = di.generator_loss(teacher_o, fake_o, x_o, sigma, noise, labels)
            if dropout:  # control: without the rewind the masks differ, and so does the loss
                torch.set_rng_state(state)
                unshared = di.generator_loss(teacher_o, fake_o, x_o.detach(), sigma, noise, labels,
                                             share_dropout=False)
                controls[f"{key} generator loss, masks not shared"] = rel(unshared, theirs.detach())
            teacher_o.eval()
            (theirs.sum() / B).backward()
            (ours.sum() / B).backward()
            results[f"{key} G images"] = rel(x_o.detach(), x_t.detach())
            results[f"{key} generator loss"] = rel(ours.detach(), theirs.detach())
            results[f"{key} generator grads"] = grad_rel(gen_o, gen_t)

            # Fake net: the authors' __call__ (no augmentation), then with a fixed augmentation.
            fake_t.train().requires_grad_(True)
            fake_o.train().requires_grad_(True)
            with torch.no_grad():
                images = gen_t.eval()(init_sigma * z, init_sigma * torch.ones(B, 1, 1, 1), labels,
                                      augment_labels=torch.zeros(B, 9))
            aug_images = images.flip(3)
            aug_labels = torch.randn(B, 9, generator=torch.Generator().manual_seed(3))
            for augmented in (False, True):
                pipe = (lambda x, out=(aug_images, aug_labels): out) if augmented else None
                clear(fake_t, fake_o)
                torch.manual_seed(99)
                rec = Recorder()
                with rec.active():
                    theirs = loss_fn(net=fake_t, images=images, labels=labels, augment_pipe=pipe)
                normal, noise = rec.draws
                torch.manual_seed(99)
                torch.randn([B, 1, 1, 1]), torch.randn_like(images)  # the same RNG position for dropout
                sigma = (normal * 1.2 - 1.2).exp()
                x = aug_images if augmented else images
                ours = di.fake_score_loss(fake_o, x, sigma, noise, labels, aug_labels if augmented else None)
                theirs.sum().div(B).backward()
                ours.sum().div(B).backward()
                k = f"{key} aug={augmented}"
                results[f"{k} fake loss"] = rel(ours.detach(), theirs.flatten(1).sum(1).detach())
                results[f"{k} fake grads"] = grad_rel(fake_o, fake_t)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, help="checkout of pkulwj1994/diff_instruct")
    parser.add_argument("--tol", type=float, default=1e-4)
    args = parser.parse_args()
    results: dict[str, float] = {}
    controls: dict[str, float] = {}
    networks, loss_mod = import_repo(args.repo)
    compare(networks, loss_mod, results, controls)
    width = max(map(len, {**results, **controls}))
    for key, value in results.items():
        print(f"{key:<{width}}  {value:.3e}")
    for key, value in controls.items():  # must be large: shows the dropout cases test the shared masks
        print(f"{key:<{width}}  {value:.3e}  (control)")
    worst = max(results, key=results.get)
    print(f"largest relative difference: {results[worst]:.3e} ({worst})")
    return 0 if results[worst] <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
