"""The text-to-image adapter against diffusers: schedule, eps -> x0, guidance, EDM form, loading, saving.

Oracles are independent of sidbench: diffusers' DDPMScheduler (alphas_cumprod, add_noise,
step().pred_original_sample), the wrapped UNet called directly, the formulas written out, and the
tiny SD folder's components loaded again by diffusers / transformers themselves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch

from sidbench.errors import ConfigError
from sidbench.nets import ddpm
from sidbench.nets.eps_unet import EpsDenoiser
from sidbench.nets.t2i import load_t2i_teacher
from tests.t2i import _tiny_sd
from tests.t2i._tiny_sd import SCHEDULER

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

tiny_sd15 = _tiny_sd.tiny_sd15  # the module-scoped tiny SD-1.5-style folder (a fixture)
STEPS = [0, 1, 20, 250, 625, 979, 999]


def _schedule(**kw) -> dict:
    return {k: SCHEDULER[k] for k in ("beta_schedule", "beta_start", "beta_end", "num_train_timesteps")} | kw


def _reference(**kw):
    """diffusers' own DDPM scheduler for the same betas (no clipping: SD 1.5's config)."""
    return diffusers.DDPMScheduler(**_schedule(**kw), clip_sample=False)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------- the schedule ----

@pytest.mark.parametrize("kind", ["scaled_linear", "linear"])
def test_alphas_cumprod_equal_diffusers(kind):
    ours = ddpm.alphas_cumprod(_schedule(beta_schedule=kind))
    assert ours.dtype == torch.float32 and ours.shape == (1000,)
    assert torch.equal(ours, _reference(beta_schedule=kind).alphas_cumprod)


def test_sd15_schedule_is_the_written_out_product():
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    torch.testing.assert_close(ddpm.alphas_cumprod(ddpm.SD15_SCHEDULE).double(), torch.cumprod(1 - betas, 0),
                               rtol=1e-6, atol=0)


def test_add_noise_and_x0_equal_diffusers_bit_for_bit():
    sched = _reference()
    abar = ddpm.alphas_cumprod(_schedule())
    x0 = torch.randn(len(STEPS), 4, 8, 8, generator=_gen(0))
    noise = torch.randn(x0.shape, generator=_gen(1))
    t = torch.tensor(STEPS)
    x_t = ddpm.add_noise(abar, x0, noise, t)
    assert torch.equal(x_t, sched.add_noise(x0, noise, t))
    eps = torch.randn(x0.shape, generator=_gen(2))  # any model output
    ours = ddpm.x0_from_eps(abar, x_t, eps, t)
    for i, step in enumerate(STEPS):
        ref = sched.step(eps[i:i + 1], step, x_t[i:i + 1], generator=_gen(3)).pred_original_sample
        assert torch.equal(ours[i:i + 1], ref), step
    # and x0_from_eps inverts add_noise given the true noise (up to float32 rounding)
    torch.testing.assert_close(ddpm.x0_from_eps(abar, x_t, noise, t)[:-1], x0[:-1], rtol=0, atol=1e-4)


def test_sigmas_and_nearest_step():
    abar = ddpm.alphas_cumprod(_schedule()).double()
    sig = ddpm.sigmas(ddpm.alphas_cumprod(_schedule()))
    torch.testing.assert_close(sig.double(), ((1 - abar) / abar).sqrt(), rtol=1e-6, atol=0)
    assert torch.equal(ddpm.timestep_of_sigma(abar.float(), sig[STEPS]), torch.tensor(STEPS))
    off = torch.tensor([0.05, 1.0, 3.3, 50.0, 1e-9, 1e9])
    expected = (off.double().log().reshape(-1, 1) - sig.double().log().reshape(1, -1)).abs().argmin(1)
    assert torch.equal(ddpm.timestep_of_sigma(abar.float(), off), expected)
    assert expected[-2] == 0 and expected[-1] == 999  # clamped to the ends


# -------------------------------------------------------------- the denoiser views ----

@pytest.fixture(scope="module")
def teacher(tiny_sd15):
    return load_t2i_teacher(tiny_sd15)


@pytest.fixture(scope="module")
def text(teacher):
    return teacher.prompts.encode(["a cat", "cat", "a a", "z"]), teacher.prompts.empty(1)


@contextlib.contextmanager
def _count_calls(module: torch.nn.Module) -> Iterator[list[int]]:
    """[calls, batch size of the last call] of `module` while inside, counted by a forward hook."""
    calls = [0, 0]

    def hook(_, args, __):
        calls[0] += 1
        calls[1] = int(args[0].shape[0])

    handle = module.register_forward_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


def _x_t(seed: int = 4) -> torch.Tensor:
    return torch.randn(4, 4, 8, 8, generator=_gen(seed))


def test_eps_and_x0_are_the_unet_and_the_formula(teacher, text):
    net, (cond, _) = teacher.denoiser, text
    unet = net.model
    abar = _reference().alphas_cumprod
    x_t, t = _x_t(), torch.tensor([20, 400, 625, 979])
    with torch.no_grad():
        eps = unet(x_t, t, encoder_hidden_states=cond).sample
        assert torch.equal(net.eps(x_t, t, cond), eps)
        a = abar[t].reshape(-1, 1, 1, 1)
        direct = (x_t - (1 - a) ** 0.5 * eps) / a ** 0.5
        torch.testing.assert_close(net.x0(x_t, t, cond), direct, rtol=1e-6, atol=1e-6)
        # a scalar step is broadcast over the batch
        one = unet(x_t, 625, encoder_hidden_states=cond).sample
        assert torch.equal(net.eps(x_t, torch.tensor(625), cond), one)


def test_guidance_at_one_is_the_conditional_call_alone(teacher, text):
    net, (cond, uncond) = teacher.denoiser, text
    x_t, t = _x_t(), torch.full((4,), 625)
    with torch.no_grad():
        with _count_calls(net.model) as calls:
            got = net.guided_eps(x_t, t, cond, uncond, 1.0)
        assert calls == [1, 4]  # one call, on the conditional batch only
        assert torch.equal(got, net.model(x_t, t, encoder_hidden_states=cond).sample)
        assert torch.equal(net.guided_eps(x_t, t, cond, None, 1), got)  # no empty prompt needed


@pytest.mark.parametrize("kappa", [0.0, 1.5, 4.5])
def test_guidance_is_eps_u_plus_kappa_times_the_difference(teacher, text, kappa):
    net, (cond, uncond) = teacher.denoiser, text
    x_t, t = _x_t(5), torch.tensor([20, 400, 625, 979])
    with torch.no_grad():
        with _count_calls(net.model) as calls:
            got = net.guided_eps(x_t, t, cond, uncond, kappa)
        assert calls == [1, 8]  # one UNet call on [uncond; cond]
        got_full = net.guided_eps(x_t, t, cond, uncond.expand_as(cond), kappa)  # a per-sample uncond
        eps_c = net.model(x_t, t, encoder_hidden_states=cond).sample
        eps_u = net.model(x_t, t, encoder_hidden_states=uncond.expand_as(cond)).sample
    expected = eps_u + kappa * (eps_c - eps_u)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(got, got_full)
    assert not torch.allclose(eps_c, eps_u)  # the two branches differ, so kappa matters
    a = _reference().alphas_cumprod[t].reshape(-1, 1, 1, 1)
    with torch.no_grad():
        x0 = net.x0(x_t, t, cond, uncond, kappa)
    torch.testing.assert_close(x0, (x_t - (1 - a) ** 0.5 * expected) / a ** 0.5, rtol=1e-5, atol=1e-4)


def test_guidance_without_the_empty_prompt_is_refused(teacher, text):
    with pytest.raises(ConfigError, match="empty-prompt embedding"):
        teacher.denoiser.guided_eps(_x_t(), torch.tensor(625), text[0], None, 2.0)


def test_edm_form_is_x0_at_the_nearest_step(teacher, text):
    net, (cond, uncond) = teacher.denoiser, text
    sig = ddpm.sigmas(net.alphas_cumprod)
    t = torch.tensor([20, 400, 625, 979])
    x = torch.randn(4, 4, 8, 8, generator=_gen(6)) + sig[t].reshape(-1, 1, 1, 1) * torch.randn(
        4, 4, 8, 8, generator=_gen(7))
    with torch.no_grad():
        for kappa in (1.0, 3.0):
            got = net(x, sig[t], text=cond, uncond=uncond, kappa=kappa)
            x_t = x / (1 + sig[t].reshape(-1, 1, 1, 1) ** 2) ** 0.5
            assert torch.equal(got, net.x0(x_t, t, cond, uncond, kappa))
            # EDM's D(x, sigma) = x - sigma eps(x_t): the same number, written the EDM way
            eps = net.guided_eps(x_t, t, cond, uncond, kappa)
            torch.testing.assert_close(got, x - sig[t].reshape(-1, 1, 1, 1) * eps, rtol=1e-4, atol=1e-4)
        # a sigma between grid points goes to the nearest step (log space); one sigma for the batch too
        off = sig[625] * 1.001
        x_t = x / (1 + off ** 2) ** 0.5
        assert torch.equal(net(x, off, text=cond), net.x0(x_t, torch.tensor(625), cond))
        assert torch.equal(net(x, None, text=cond, timesteps=t, output="eps"), net.eps(x, t, cond))
    with pytest.raises(ConfigError, match="text embeddings"):
        net(x, sig[t])


# ------------------------------------------------------------------- the teacher ----

def test_loaded_teacher_is_frozen_and_wired(tiny_sd15, teacher):
    from sidbench.fileio import sha256_file

    net = teacher.denoiser
    assert isinstance(net, EpsDenoiser) and not net.training
    assert not any(p.requires_grad for p in net.parameters())
    assert not any(p.requires_grad for p in teacher.prompts.parameters())
    assert torch.equal(net.alphas_cumprod, _reference().alphas_cumprod)
    assert net.num_train_timesteps == 1000 and teacher.latent_shape == (4, 8, 8)
    assert teacher.info["kind"] == "diffusers"
    assert teacher.info["sha256"] == sha256_file(tiny_sd15 / "unet" / "diffusion_pytorch_model.safetensors")
    assert teacher.config["class_name"] == "EpsDenoiser"
    assert teacher.config["init_kwargs"]["schedule"] == _schedule()
    ref = diffusers.UNet2DConditionModel.from_pretrained(tiny_sd15, subfolder="unet")
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in net.model.state_dict().items())


def test_prompts_are_encoded_in_one_call_and_the_empty_prompt_once(tiny_sd15):
    teacher = load_t2i_teacher(tiny_sd15)  # a fresh encoder: its counter and cache start empty
    enc = teacher.prompts
    prompts = ["a cat", "cat", "", "a very long prompt that is truncated"]
    with _count_calls(enc.text_encoder) as calls:
        got = enc.encode(prompts)
        first = enc.empty(3)
        second = enc.empty(5)
    assert calls == [2, 1] and enc.calls == 2  # the batch in one call; "" encoded once, then reused
    tok = transformers.CLIPTokenizer.from_pretrained(tiny_sd15, subfolder="tokenizer")
    te = transformers.CLIPTextModel.from_pretrained(tiny_sd15, subfolder="text_encoder").eval()
    ids = tok(prompts, padding="max_length", max_length=8, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(got, te(ids).last_hidden_state)
    assert got.shape == (4, 8, 16) and got.dtype == torch.float32
    assert first.shape == (3, 8, 16) and second.shape == (5, 8, 16)
    assert torch.equal(first[0], got[2]) and torch.equal(second[4], got[2])
    with pytest.raises(ConfigError, match="list of prompts"):
        enc.encode("a cat")


def test_decoder_divides_by_the_scaling_factor(tiny_sd15, teacher):
    # frozen like the teacher's: on the CPU, requires_grad changes the kernels torch picks (~5e-7 apart)
    vae = diffusers.AutoencoderKL.from_pretrained(tiny_sd15, subfolder="vae").eval().requires_grad_(False)
    scale = vae.config.scaling_factor
    assert teacher.info["vae_scaling_factor"] == scale and scale != 1
    latents = torch.randn(2, 4, 8, 8, generator=_gen(8))
    with torch.no_grad():
        expected = vae.decode(latents / scale).sample
    got = teacher.decode(latents)
    assert got.shape == (2, 3, 16, 16) and torch.equal(got, expected)


# ------------------------------------------------------------- as a native network ----

def test_wrapped_teacher_round_trips_through_save_and_load(teacher, text, tmp_path):
    from sidbench.nets.native import load_network, read_network_record, save_network

    save_network(teacher.denoiser, teacher.config, tmp_path / "net")
    back = load_network(tmp_path / "net")
    assert isinstance(back, EpsDenoiser) and not back.training
    assert back.init_kwargs == teacher.denoiser.init_kwargs
    ours, theirs = teacher.denoiser.state_dict(), back.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert torch.equal(back.alphas_cumprod, teacher.denoiser.alphas_cumprod)
    x_t, t = _x_t(9), torch.tensor([20, 400, 625, 979])
    with torch.no_grad():
        expected = teacher.denoiser.x0(x_t, t, text[0], text[1], 2.0)
        assert torch.equal(back.x0(x_t, t, text[0], text[1], 2.0), expected)
    assert read_network_record(tmp_path / "net")["class_name"] == "EpsDenoiser"


def test_building_on_the_meta_device_allocates_nothing(teacher):
    from sidbench.nets.build import build_network

    with torch.device("meta"):
        net = build_network(teacher.config)
    tensors = [*net.parameters(), *net.buffers()]
    assert tensors and all(p.is_meta for p in tensors)
    real = dict(teacher.denoiser.state_dict())
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in real.items()}


def test_native_teacher_with_its_own_text_encoder(tmp_path):
    """The digits-t2i shape: an EpsDenoiser carrying a CLIPTextModel and a word vocabulary."""
    from sidbench.nets.native import load_network, save_network
    from sidbench.nets.prompts import WordTokenizer

    vocab = ["a", "cat", "dog"]
    kwargs = {"img_resolution": 8, "img_channels": 1, "label_dim": 0, "use_fp16": False,
              "schedule": dict(ddpm.SD15_SCHEDULE),
              "unet": {**_tiny_sd.init_args(_tiny_sd.UNET), "in_channels": 1, "out_channels": 1},
              "text_encoder": {"vocab_size": 4 + len(vocab), "hidden_size": 16, "intermediate_size": 32,
                               "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 6,
                               "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2},
              "tokenizer": {"kind": "words", "vocab": vocab, "max_length": 6}}
    config = {"class_name": "EpsDenoiser", "init_kwargs": kwargs}
    torch.manual_seed(0)
    net = EpsDenoiser(**kwargs)
    save_network(net, config, tmp_path / "t")
    back = load_network(tmp_path / "t")
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in net.state_dict().items())
    teacher = load_t2i_teacher(tmp_path / "t")
    assert teacher.info["kind"] == "native" and teacher.denoiser.text_encoder is None
    assert teacher.config["init_kwargs"]["text_encoder"] is None  # the method nets copy the UNet only
    assert not any(p.requires_grad for p in teacher.denoiser.parameters())
    ids = WordTokenizer(vocab, 6)(["a cat", "dog"])
    assert ids.tolist() == [[1, 4, 5, 2, 0, 0], [1, 6, 2, 0, 0, 0]]
    with torch.no_grad():
        assert torch.equal(teacher.prompts.encode(["a cat", "dog"]), net.text_encoder(ids)[0])
    x = torch.randn(2, 1, 8, 8, generator=_gen(10))
    assert torch.equal(teacher.decode(x), x)


@pytest.mark.parametrize("spec,message", [
    ({"kind": "bpe"}, "unknown tokenizer spec"),
    ({"kind": "words", "max_length": 6}, "needs 'vocab'"),
    ({"kind": "words", "vocab": "a cat"}, "needs 'vocab'"),
    ({"kind": "words", "vocab": ["a", "a"], "max_length": 6}, "distinct lower-case"),
    ({"kind": "words", "vocab": ["a"], "max_length": 2}, "max_length must be a whole number >= 3"),
])
def test_bad_tokenizer_specs_are_one_line_config_errors(spec, message):
    from sidbench.nets.prompts import WordTokenizer

    with pytest.raises(ConfigError, match=message) as info:
        WordTokenizer.from_spec(spec)
    assert "\n" not in str(info.value)


def test_mismatched_text_or_timesteps_are_one_line_errors():
    from sidbench.errors import ConfigError
    from sidbench.nets.build import build_network
    from sidbench.suites.digits_t2i import TEACHER_NETWORK

    net = build_network(TEACHER_NETWORK).eval()
    x = torch.zeros(3, 1, 16, 16)
    cases = ((torch.zeros(2, 10, 32), torch.tensor([5, 5, 5])), (torch.zeros(3, 32), torch.tensor([5])),
             (torch.zeros(3, 10, 32), torch.tensor([5, 6])))
    for text, t in cases:
        with pytest.raises(ConfigError, match="one timestep and one") as err:
            net.eps(x, t, text)
        assert "\n" not in str(err.value)
