"""SiD-LSG: its losses against methods.md's formulas written out, where each kappa goes, prompt dropout,
settings checks. Tiny random EpsDenoisers from a small diffusers config (no files); the text side is a
recording stand-in for `ctx.conditioning` with fixed random embeddings per prompt."""

from __future__ import annotations

import copy
import math
import zlib

import pytest
import torch

from sidbench.errors import ConfigError
from sidbench.methods import sid_lsg
from sidbench.methods.base import Draws, UpdateContext
from sidbench.methods.sid_lsg import SID_LSG
from tests.methods._tiny import assert_grads_close, grads, zero_grads

pytest.importorskip("diffusers")

from sidbench.nets.eps_unet import EpsDenoiser  # noqa: E402

B, C, R, L, D = 4, 4, 8, 3, 16  # batch, latent channels, resolution, tokens, embedding width
IMG = (C, R, R)
UNET = {"sample_size": R, "in_channels": C, "out_channels": C, "layers_per_block": 1,
        "block_out_channels": [8, 16], "norm_num_groups": 4,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": D,
        "attention_head_dim": 2}
PROMPTS = ["a cat", "two dogs", "a red car", "the sea", "a tall tree"]
# SD 1.5's schedule written out: scaled_linear betas from 0.00085 to 0.012 over 1000 steps.
ABAR = torch.cumprod(1 - torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2, dim=0)


def _tiny(seed: int) -> EpsDenoiser:
    net = EpsDenoiser(img_resolution=R, img_channels=C, unet=UNET)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every weight random and O(1/sqrt(fan-in)): no output is trivially 0
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 / math.sqrt(max(1, p[0].numel()))))
    return net.eval()


@pytest.fixture(scope="module")
def base_nets() -> dict[str, EpsDenoiser]:
    return {"teacher": _tiny(0), "fake_score": _tiny(1), "generator": _tiny(2)}


@pytest.fixture
def nets(base_nets) -> dict[str, EpsDenoiser]:
    out = copy.deepcopy(base_nets)
    out["teacher"].requires_grad_(False)
    return out


def embed(prompt: str) -> torch.Tensor:
    """A fixed random [L, D] embedding per prompt."""
    return torch.randn(L, D, generator=torch.Generator().manual_seed(zlib.crc32(prompt.encode())))


class Recorder:
    """Stands in for `ctx.conditioning`: draws prompts like `Conditioning.sample`, records each call."""

    def __init__(self, prompts=PROMPTS):
        self.prompts = list(prompts)
        self.sampled: list[list[str]] = []
        self.encoded: list[list[str]] = []
        self.empties: list[int] = []

    def sample(self, draws: Draws) -> list[str]:
        out = [self.prompts[i] for i in draws.randint(len(self.prompts)).reshape(-1).tolist()]
        self.sampled.append(out)
        return out

    def encode(self, prompts) -> torch.Tensor:
        self.encoded.append(list(prompts))
        return torch.stack([embed(p) for p in prompts])

    def empty(self, batch: int) -> torch.Tensor:
        self.empties.append(batch)
        return embed("").expand(batch, L, D)


def make_draws(b: int, seed: int = 0) -> Draws:
    return Draws([torch.Generator().manual_seed(seed * 1000 + j) for j in range(b)])


def context(nets, settings, conditioning, b: int = B, seed: int = 0) -> UpdateContext:
    return UpdateContext(nets=nets, settings=settings, draws=make_draws(b, seed), labels=None, images=None,
                         img_shape=IMG, label_dim=0, kimg=0.0, step=0, micro_batch=b, global_batch=b,
                         conditioning=conditioning)


def text(prompts) -> torch.Tensor:
    return torch.stack([embed(p) for p in prompts])


def close(ours: torch.Tensor, ref: torch.Tensor, tol: float = 1e-5) -> None:
    """Equal up to tol of the reference's largest entry (a batched [uncond; cond] call vs two calls)."""
    assert ours.shape == ref.shape
    assert float((ours - ref).abs().max()) <= tol * float(ref.abs().max()), (ours, ref)


# ------------------------------------------------------------ the formulas, written out ----

def unet_eps(net: EpsDenoiser, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    return net.model(x, t, encoder_hidden_states=emb).sample


def guided(net, x, t, cond, kappa):
    """eps_u + kappa (eps_c - eps_u), u the empty prompt, as two separate UNet calls."""
    eps_c = unet_eps(net, x, t, cond)
    if kappa == 1:
        return eps_c
    eps_u = unet_eps(net, x, t, embed("").expand_as(cond))
    return eps_u + kappa * (eps_c - eps_u)


def per(values: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return values[t].reshape(-1, 1, 1, 1)


def ref_generator(net, z, cond, t_init=625):
    """x = sqrt(1 - abar) z at t_init; G = (x - sqrt(1 - abar) eps) / sqrt(abar)."""
    t = torch.full((z.shape[0],), t_init)
    a = per(ABAR, t)
    x = (1 - a).sqrt() * z
    return (x - (1 - a).sqrt() * unet_eps(net, x, t, cond)) / a.sqrt()


def ref_noisy(x0, noise, t):
    a = per(ABAR, t)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def ref_x0(net, x_t, t, cond, kappa):
    a = per(ABAR, t)
    return (x_t - (1 - a).sqrt() * guided(net, x_t, t, cond, kappa)) / a.sqrt()


def inputs(seed: int = 0, b: int = B):
    g = torch.Generator().manual_seed(seed)
    z, noise = torch.randn(b, *IMG, generator=g), torch.randn(b, *IMG, generator=g)
    t = torch.tensor([20, 345, 625, 979][:b])
    return z, noise, t, text(PROMPTS[:b])


def test_generator_is_the_x0_of_its_eps_at_t_init(nets):
    z, _, _, cond = inputs()
    with torch.no_grad():
        for t_init in (625, 500):
            close(sid_lsg.generate_latents(nets["generator"], z, cond, t_init),
                  ref_generator(nets["generator"], z, cond, t_init))


@pytest.mark.parametrize("kappa", [1.0, 1.5, 4.5])
def test_fake_score_loss_is_the_guided_eps_mse(nets, kappa):
    z, noise, t, cond = inputs()
    fake = nets["fake_score"]
    with torch.no_grad():
        x_g = ref_generator(nets["generator"], z, cond)
        uncond = embed("").expand_as(cond) if kappa != 1 else None
        ours = sid_lsg.fake_score_loss(fake, x_g, t, noise, cond, uncond, kappa)
        ref = (guided(fake, ref_noisy(x_g, noise, t), t, cond, kappa) - noise).square().sum(dim=(1, 2, 3))
        close(ours, ref)
        x_g[1, 2, 3, 4] = float("nan")  # a NaN sample gives 0, the others are unchanged (the authors drop it)
        nan = sid_lsg.fake_score_loss(fake, x_g, t, noise, cond, uncond, kappa)
    assert nan[1] == 0 and torch.equal(nan[[0, 2, 3]], ours[[0, 2, 3]])


def test_fake_score_loss_gradient_equals_the_formula(nets):
    z, noise, t, cond = inputs()
    fake = nets["fake_score"].train()
    with torch.no_grad():
        x_g = ref_generator(nets["generator"], z, cond)
    sid_lsg.fake_score_loss(fake, x_g, t, noise, cond, embed("").expand_as(cond), 4.5).sum().backward()
    ours = grads(fake)
    zero_grads(fake)
    (guided(fake, ref_noisy(x_g, noise, t), t, cond, 4.5) - noise).square().sum().backward()
    assert_grads_close(ours, grads(fake), rtol=1e-5)


def ref_generator_loss(nets, z, noise, t, cond, kappa_real, kappa_fake, alpha):
    """methods.md: y_r, y_f the x0 of teacher (kappa4) and fake net (kappa2) on
    x_t = add_noise(G(z), noise, t); loss = sum (y_r - y_f)((y_r - x_g) - alpha (y_r - y_f)) / w,
    w = sg(mean |x_g - y_r|) floored at 1e-5, per sample."""
    out = []
    for i in range(z.shape[0]):  # one sample at a time
        zi, ni, ti, ci = z[i:i + 1], noise[i:i + 1], t[i:i + 1], cond[i:i + 1]
        x_g = ref_generator(nets["generator"], zi, ci)
        x_t = ref_noisy(x_g, ni, ti)
        y_r = ref_x0(nets["teacher"], x_t, ti, ci, kappa_real)
        y_f = ref_x0(nets["fake_score"], x_t, ti, ci, kappa_fake)
        w = max(float((x_g - y_r).detach().abs().mean()), 1e-5)
        if alpha == 1:  # the authors' own alpha == 1 branch
            out.append(((y_r - y_f) * (y_f - x_g)).sum() / w)
        else:
            out.append(((y_r - y_f) * ((y_r - x_g) - alpha * (y_r - y_f))).sum() / w)
    return torch.stack(out)


@pytest.mark.parametrize("kappa_real,kappa_fake,alpha", [(1.0, 1.0, 1.0), (4.5, 1.5, 1.2), (1.5, 4.5, 1.0),
                                                          (1.0, 4.5, 1.2)])
def test_generator_loss_and_gradients_equal_the_formula(nets, kappa_real, kappa_fake, alpha):
    z, noise, t, cond = inputs()
    nets["fake_score"].requires_grad_(False)
    generator = nets["generator"].train()
    guided_any = kappa_real != 1 or kappa_fake != 1
    uncond = embed("").expand_as(cond) if guided_any else None
    x_g = sid_lsg.generate_latents(generator, z, cond, 625)
    ours = sid_lsg.generator_loss(nets["teacher"], nets["fake_score"], x_g, t, noise, cond, uncond,
                                  kappa_real, kappa_fake, alpha)
    ours.sum().backward()
    ours_grads = grads(generator)
    zero_grads(generator)
    ref = ref_generator_loss(nets, z, noise, t, cond, kappa_real, kappa_fake, alpha)
    ref.sum().backward()
    close(ours.detach(), ref.detach())
    assert ref.abs().min() > 0
    assert_grads_close(ours_grads, grads(generator), rtol=1e-4)  # w is a constant: else these differ


def test_generator_loss_gives_zero_for_a_nan_sample(nets):
    z, noise, t, cond = inputs()
    with torch.no_grad():
        x_g = sid_lsg.generate_latents(nets["generator"], z, cond, 625)
        clean = sid_lsg.generator_loss(nets["teacher"], nets["fake_score"], x_g, t, noise, cond, None, 1, 1)
        x_g[2, 0, 0, 0] = float("nan")
        loss = sid_lsg.generator_loss(nets["teacher"], nets["fake_score"], x_g, t, noise, cond, None, 1, 1)
    assert loss[2] == 0 and torch.equal(loss[[0, 1, 3]], clean[[0, 1, 3]])


# ------------------------------------------------------------ where each kappa goes ----

class Spy:
    """Records every UNet call (network, batch, text embeddings, mode, t) and every guided_eps kappa."""

    def __init__(self, nets):
        self.calls: list[tuple[str, int, torch.Tensor, bool, torch.Tensor]] = []
        self.kappas: list[tuple[str, float]] = []
        for name, net in nets.items():
            net.model.register_forward_hook(self._hook(name), with_kwargs=True)
            net.guided_eps = self._guided(name, net.guided_eps)

    def _hook(self, name):
        def hook(module, args, kwargs, output):
            self.calls.append((name, args[0].shape[0], kwargs["encoder_hidden_states"].detach().clone(),
                               module.training, args[1].detach().clone()))
        return hook

    def _guided(self, name, inner):
        def guided_eps(x_t, t, cond, uncond, kappa):
            self.kappas.append((name, float(kappa)))
            return inner(x_t, t, cond, uncond, kappa)
        return guided_eps

    def take(self):
        calls, kappas = self.calls, self.kappas
        self.calls, self.kappas = [], []
        return calls, kappas


def settings(**values):
    return SID_LSG.make_settings(values)


def check_text(emb: torch.Tensor, prompts: list[str], guided_call: bool) -> None:
    """A UNet call saw the prompts' embeddings, after the empty prompt's when guided ([uncond; cond])."""
    expected = text(prompts)
    if guided_call:
        expected = torch.cat([embed("").expand_as(expected), expected])
    assert torch.equal(emb, expected)


@pytest.mark.parametrize("k1,k2,k4", [(1.0, 1.0, 1.0), (1.5, 2.5, 4.5), (3.0, 1.0, 1.0), (1.0, 2.5, 1.0),
                                      (1.0, 1.0, 4.5), (1.5, 1.5, 1.5)])
def test_kappa_goes_to_three_places_and_never_to_the_generator(nets, k1, k2, k4):
    s = settings(cfg_train_fake=k1, cfg_eval_fake=k2, cfg_eval_real=k4, prompt_dropout=0.0,
                 fake_loss_scale=2.0, loss_scale=3.0)
    spy, cond = Spy(nets), Recorder()

    out = sid_lsg.fake_score_update(context(nets, s, cond))
    calls, kappas = spy.take()
    assert out.per_sample.shape == (B,) and out.scale == 2.0 and set(out.terms) == {"fake_score"}
    assert kappas == [("generator", 1.0), ("fake_score", k1)]
    assert [(name, batch, training) for name, batch, _, training, _ in calls] == [
        ("generator", B, False), ("fake_score", 2 * B if k1 != 1 else B, True)]
    prompts = cond.encoded[-1]
    check_text(calls[0][2], prompts, guided_call=False)
    check_text(calls[1][2], prompts, guided_call=k1 != 1)
    assert (calls[0][4] == 625).all()

    out = sid_lsg.generator_update(context(nets, s, cond, seed=1))
    calls, kappas = spy.take()
    assert out.per_sample.shape == (B,) and out.scale == 3.0 and set(out.terms) == {"generator"}
    assert sorted(kappas) == sorted([("generator", 1.0), ("fake_score", k2), ("teacher", k4)])
    assert sorted((name, batch, training) for name, batch, _, training, _ in calls) == sorted([
        ("generator", B, True), ("fake_score", 2 * B if k2 != 1 else B, False),
        ("teacher", 2 * B if k4 != 1 else B, False)])
    by_net = {name: (emb, t) for name, _, emb, _, t in calls}
    prompts = cond.encoded[-1]
    check_text(by_net["generator"][0], prompts, guided_call=False)
    check_text(by_net["fake_score"][0], prompts, guided_call=k2 != 1)
    check_text(by_net["teacher"][0], prompts, guided_call=k4 != 1)
    assert torch.equal(by_net["fake_score"][1][-B:], by_net["teacher"][1][-B:])  # one t for both
    if k1 == k2 == k4 == 1:  # no unconditional branch anywhere: the empty prompt is never asked for
        assert cond.empties == []


@pytest.mark.parametrize("k1,k2,k4,drops", [(1.0, 1.0, 1.0, False), (1.0, 1.0, 4.5, False),
                                            (1.5, 1.0, 1.0, True), (1.0, 1.5, 1.0, True),
                                            (4.5, 4.5, 4.5, True)])
def test_prompt_dropout_only_in_the_fake_step_and_only_with_kappa1_or_kappa2(nets, k1, k2, k4, drops):
    s = settings(cfg_train_fake=k1, cfg_eval_fake=k2, cfg_eval_real=k4, prompt_dropout=1.0)
    spy, cond = Spy(nets), Recorder()
    sid_lsg.fake_score_update(context(nets, s, cond))
    calls, _ = spy.take()
    sampled, encoded = cond.sampled[-1], cond.encoded[-1]
    assert "" not in sampled
    assert encoded == ([""] * B if drops else sampled)
    check_text(calls[0][2], encoded, guided_call=False)  # G(z) is made from the dropped-out prompts too
    sid_lsg.generator_update(context(nets, s, cond, seed=1))
    assert cond.encoded[-1] == cond.sampled[-1] and "" not in cond.encoded[-1]  # never in the generator step


def test_prompt_dropout_follows_the_documented_draws(nets):
    """Per sample: prompt index, then u; prompt j is "" exactly when u_j < prompt_dropout."""
    b = 16
    s = settings(cfg_train_fake=1.5, cfg_eval_fake=1.5, cfg_eval_real=1.5, prompt_dropout=0.5)
    cond = Recorder()
    sid_lsg.fake_score_update(context(nets, s, cond, b=b, seed=3))
    replay = make_draws(b, seed=3)
    idx = replay.randint(len(PROMPTS)).reshape(-1).tolist()
    u = replay.rand(1).reshape(-1).tolist()
    expected = ["" if uj < 0.5 else PROMPTS[i] for i, uj in zip(idx, u, strict=True)]
    assert cond.encoded[-1] == expected
    assert 0 < expected.count("") < b  # this seed drops some and keeps some


def test_updates_are_the_pure_losses_on_the_documented_draws(nets):
    """Fake step: prompt, u, z, t, noise; generator step: prompt, z, t, noise (per sample)."""
    s = settings(cfg_train_fake=1.5, cfg_eval_fake=2.0, cfg_eval_real=4.5, prompt_dropout=0.0)
    fake_out = sid_lsg.fake_score_update(context(nets, s, Recorder(), seed=5))
    gen_out = sid_lsg.generator_update(context(nets, s, Recorder(), seed=6))
    replay = make_draws(B, seed=5)
    prompts = [PROMPTS[i] for i in replay.randint(len(PROMPTS)).reshape(-1).tolist()]
    replay.rand(1)
    z = replay.randn(*IMG)
    t = replay.randint(960).reshape(-1) + 20
    noise = replay.randn(*IMG)
    c = text(prompts)
    with torch.no_grad():
        x_g = ref_generator(nets["generator"], z, c)
        eps = guided(nets["fake_score"], ref_noisy(x_g, noise, t), t, c, 1.5)
        ref = (eps - noise).square().sum((1, 2, 3))
    close(fake_out.per_sample.detach(), ref)
    replay = make_draws(B, seed=6)
    prompts = [PROMPTS[i] for i in replay.randint(len(PROMPTS)).reshape(-1).tolist()]
    z = replay.randn(*IMG)
    t = replay.randint(960).reshape(-1) + 20
    noise = replay.randn(*IMG)
    with torch.no_grad():
        ref = ref_generator_loss(nets, z, noise, t, text(prompts), 4.5, 2.0, 1.0)
    close(gen_out.per_sample.detach(), ref)


def test_timesteps_are_uniform_on_tmin_to_tmax_minus_one(nets):
    spy = Spy(nets)
    sid_lsg.fake_score_update(context(nets, settings(tmin=20, tmax=22), Recorder(), b=16))
    calls, _ = spy.take()
    assert set(calls[1][4].tolist()) == {20, 21}


def test_an_update_without_prompts_is_a_config_error(nets):
    with pytest.raises(ConfigError) as info:
        sid_lsg.generator_update(context(nets, settings(), None))
    assert "\n" not in str(info.value) and "text-to-image" in str(info.value)


# ------------------------------------------------------------ settings ----

def test_defaults_are_the_authors():
    s = settings()
    assert (s.t_init, s.tmin, s.tmax, s.alpha, s.prompt_dropout) == (625, 20, 980, 1.0, 0.1)
    assert (s.cfg_train_fake, s.cfg_eval_fake, s.cfg_eval_real) == (1, 1, 1)
    assert (s.loss_scale, s.fake_loss_scale) == (1, 1)
    assert not s.drops_prompts and settings(cfg_eval_fake=2).drops_prompts
    assert not settings(cfg_eval_real=4.5).drops_prompts


BAD = {
    "tmin == tmax": ({"tmin": 500, "tmax": 500}, "tmin"),
    "tmin > tmax": ({"tmin": 980, "tmax": 20}, "tmin"),
    "t_init 1000": ({"t_init": 1000}, "t_init"),
    "t_init negative": ({"t_init": -1}, "t_init"),
    "t_init float": ({"t_init": 625.0}, "t_init"),
    "tmax 1001": ({"tmax": 1001}, "tmax"),
    "negative kappa1": ({"cfg_train_fake": -1.5}, "cfg_train_fake"),
    "negative kappa2": ({"cfg_eval_fake": -0.1}, "cfg_eval_fake"),
    "NaN kappa4": ({"cfg_eval_real": float("nan")}, "cfg_eval_real"),
    "inf kappa4": ({"cfg_eval_real": float("inf")}, "cfg_eval_real"),
    "string kappa": ({"cfg_eval_real": "4.5"}, "cfg_eval_real"),
    "bool kappa": ({"cfg_train_fake": True}, "cfg_train_fake"),
    "NaN alpha": ({"alpha": float("nan")}, "alpha"),
    "string tmin": ({"tmin": "20"}, "tmin"),
    "dropout above 1": ({"prompt_dropout": 1.5}, "prompt_dropout"),
    "zero loss scale": ({"loss_scale": 0.0}, "loss_scale"),
    "unknown key": ({"cfg_scale": 4.5}, "cfg_scale"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_settings_are_one_line_config_errors(case):
    values, field = BAD[case]
    with pytest.raises(ConfigError) as info:
        settings(**values)
    message = str(info.value)
    assert "\n" not in message and field in message and "sid-lsg" in message
